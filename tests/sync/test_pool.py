"""``SpeechSynthesizerObjectPool``: reuse by server-side handshake counts, no stale audio, misuse."""

from __future__ import annotations

from typing import Any

import pytest

from cosyvoice_stream import AuthenticationError, InvalidParameterError, ServerError
from cosyvoice_stream.server import Fault, ServerHandle
from cosyvoice_stream.sync import (
    AudioFormat,
    InvalidTaskError,
    RequestFailure,
    SpeechSynthesizer,
    SpeechSynthesizerObjectPool,
)

from .support import KEY, MODEL, STEP, VOICE, RecordingCallback, until

PCM = AudioFormat.PCM_16000HZ_MONO_16BIT
MS = int(STEP * 1000)
LONG = " ".join(f"Sentence number {n} of a long text that keeps the server busy." for n in range(12))


def pool_for(server: ServerHandle, **kwargs: Any) -> SpeechSynthesizerObjectPool:
    kwargs.setdefault("max_size", 2)
    return SpeechSynthesizerObjectPool(url=server.url, api_key=KEY, **kwargs)


def task_of(server: ServerHandle, synthesizer: SpeechSynthesizer) -> Any:
    return next(t for t in server.server.tasks if t.task_id == synthesizer.get_last_request_id())


def test_borrowed_synthesizers_run_on_the_pools_connections(server: ServerHandle) -> None:
    pool = pool_for(server)
    try:
        assert server.server.connections_opened == 2 and pool.idle_connections == 2
        for _ in range(3):
            synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
            assert pool.idle_connections == 1
            assert synthesizer.call("Hello.", timeout_millis=MS)
            synthesizer.streaming_call("And a streamed task ")  # a second task, same connection
            synthesizer.streaming_call("on the same synthesizer.")
            assert synthesizer.streaming_complete(MS)
            assert pool.return_synthesizer(synthesizer) is True
            # The call()'s task primed for the streamed one's parameters and the other way
            # round: the background thread ends such a primed task (off the caller's path).
            until(lambda: pool.idle_connections == 2, "both connections back in the pool")
        assert server.server.connections_opened == 2  # every task on the pool's two connections
        used = [t for t in server.server.tasks if t.texts]
        assert len(used) == 6 and {t.state for t in used} == {"finished"}
        assert all(t.audio_bytes_sent == 0 for t in server.server.tasks if not t.texts)  # primed ones
    finally:
        pool.shutdown()
    until(lambda: server.server.active_connections == 0, "the pool's connections to close")


def test_borrowed_synthesizer_takes_the_sdk_parameters(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=1)
    try:
        callback = RecordingCallback()
        synthesizer = pool.borrow_synthesizer(
            MODEL, "longxiaochun_v3", PCM, 80, 1.2, 0.9, 7, callback=callback, additional_params={"x": 1}
        )
        synthesizer.call("Hello.")
        assert callback.closed.wait(STEP) and callback.names[-2:] == ["on_complete", "on_close"]
        task = task_of(server, synthesizer)
        assert task.parameters["voice"] == "longxiaochun_v3" and task.parameters["volume"] == 80
        assert task.parameters["rate"] == 1.2 and task.parameters["seed"] == 7 and task.parameters["x"] == 1
        pool.return_synthesizer(synthesizer)
    finally:
        pool.shutdown()


def test_a_cancelled_borrower_leaks_no_audio_into_the_next(make_server: Any) -> None:
    server = make_server(rtf=1.0)  # real time: the first task is still speaking
    pool = pool_for(server, max_size=1)
    try:
        first = RecordingCallback()
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, callback=first)
        synthesizer.streaming_call(LONG)
        assert first.first_data.wait(STEP)
        synthesizer.streaming_cancel()  # the directive: the server ends the task, the connection stays clean
        pool.return_synthesizer(synthesizer)
        at_return = list(first.calls)
        second = RecordingCallback()
        other = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, callback=second)
        other.streaming_call("Hello.")  # the same parameters: the task primed on that connection
        other.streaming_complete(MS)
        assert second.closed.wait(STEP)
        assert len(second.audio) == task_of(server, other).audio_bytes_sent  # its own audio, nothing else
        assert first.calls == at_return  # nothing reached the first borrower afterwards
        assert server.server.connections_opened == 1  # the cancelled task's connection was clean: reused
        assert len(server.server.tasks) == 2  # and its next task was the one primed there
        pool.return_synthesizer(other)
    finally:
        pool.shutdown()


def test_a_borrower_returned_mid_task_is_cut_and_its_connection_closed(make_server: Any) -> None:
    server = make_server(rtf=1.0)
    pool = pool_for(server, max_size=1)
    try:
        first = RecordingCallback()
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, callback=first)
        synthesizer.streaming_call(LONG)
        assert first.first_data.wait(STEP)
        assert pool.return_synthesizer(synthesizer) is True  # still running: cut
        assert first.closed.is_set() and first.names[-1] == "on_close"
        at_return = list(first.calls)
        assert pool.idle_connections == 0  # a cut connection may hold audio: never pooled
        second = RecordingCallback()
        other = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, callback=second)
        other.call("Hello.")
        assert second.closed.wait(STEP)
        assert len(second.audio) == task_of(server, other).audio_bytes_sent
        assert first.calls == at_return
        pool.return_synthesizer(other)
    finally:
        pool.shutdown()


def test_a_failed_borrower_does_not_poison_the_pool(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=1)
    try:
        server.server.add_fault(Fault(kind="fail_task", code="InternalError", message="boom", after_frames=1))
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        with pytest.raises(RequestFailure) as info:
            synthesizer.call(LONG[:300], timeout_millis=MS)
        assert isinstance(info.value, ServerError)
        pool.return_synthesizer(synthesizer)
        assert pool.idle_connections == 0  # the failed task's connection is not pooled
        other = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        audio = other.call("Hello.", timeout_millis=MS)
        assert audio is not None and len(audio) == task_of(server, other).audio_bytes_sent
        pool.return_synthesizer(other)
    finally:
        pool.shutdown()


def test_an_exhausted_pool_connects_on_demand_and_keeps_at_most_max_size(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=1)
    try:
        a = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        b = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)  # none left: connects on demand
        assert a.call("One.") and b.call("Two.")
        assert server.server.connections_opened == 2
        pool.return_synthesizer(a)
        pool.return_synthesizer(b)
        assert pool.idle_connections == 1  # max_size: the other one was closed
    finally:
        pool.shutdown()
    until(lambda: server.server.active_connections == 0, "every connection to close")


def test_idle_connections_are_replaced_before_the_service_closes_them(make_server: Any) -> None:
    server = make_server(idle_timeout_s=3.0)
    pool = pool_for(server, max_size=1, idle_ttl=1)
    try:
        until(lambda: server.server.connections_opened >= 2, "the idle connection to be replaced")
        until(lambda: pool.idle_connections == 1, "the replacement to join the pool")
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        assert synthesizer.call("Still warm.", timeout_millis=MS)
        pool.return_synthesizer(synthesizer)
    finally:
        pool.shutdown()


def test_shutdown_closes_everything(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=3)
    borrowed = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)  # lent, never used
    assert server.server.active_connections == 3
    pool.shutdown()
    pool.shutdown()  # a second call does nothing
    until(lambda: server.server.active_connections == 0, "every connection to close")
    with pytest.raises(InvalidTaskError, match="shutdown"):
        pool.borrow_synthesizer(MODEL, VOICE)
    assert borrowed.call("It still works, on a connection of its own.")
    assert pool.return_synthesizer(borrowed) is False  # the pool is gone


# -- misuse ---------------------------------------------------------------------------
@pytest.mark.parametrize("max_size", [0, -1, 101, True, 2.0, "2", None])
def test_max_size_out_of_range_is_refused(server: ServerHandle, max_size: Any) -> None:
    with pytest.raises(InvalidParameterError, match="max_size"):
        SpeechSynthesizerObjectPool(max_size=max_size, url=server.url, api_key=KEY)
    assert server.server.connections_opened == 0


def test_returning_a_foreign_object_is_refused(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=1)
    try:
        with pytest.raises(InvalidParameterError, match="SpeechSynthesizer borrowed from this pool"):
            pool.return_synthesizer("not a synthesizer")  # type: ignore[arg-type]
        stranger = SpeechSynthesizer(MODEL, VOICE, url=server.url, api_key=KEY)
        with pytest.raises(InvalidParameterError, match="not borrowed from this pool"):
            pool.return_synthesizer(stranger)
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE)
        pool.return_synthesizer(synthesizer)
        with pytest.raises(InvalidParameterError, match="returned already"):
            pool.return_synthesizer(synthesizer)
        with pytest.raises(InvalidParameterError, match="url"):
            pool.borrow_synthesizer(MODEL, VOICE, url="ws://127.0.0.1:9/other")
        with pytest.raises(InvalidParameterError, match="voice"):
            pool.borrow_synthesizer(MODEL, "")  # parameters are validated as for SpeechSynthesizer
        assert pool.idle_connections == 1  # misuse cost no connection
    finally:
        pool.shutdown()


def test_a_refused_key_fails_the_pool_at_once_without_leaks(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="handshake_status", status=401))
    with pytest.raises(AuthenticationError) as info:
        SpeechSynthesizerObjectPool(max_size=2, url=server.url, api_key=KEY)
    assert isinstance(info.value, RequestFailure) and info.value.http_code == 401
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    until(lambda: server.server.active_connections == 0, "no connection left open")
