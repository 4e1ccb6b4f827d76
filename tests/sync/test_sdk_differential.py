"""Differential tests: the same scenarios through the real dashscope 2.0.2 SDK and ``cosyvoice_stream.sync``.

Both run against the embedded server on loopback; what a user observes
(callback order, what blocks, audio before completion after a flush, no
audio after a cancel, exception types and attributes) is compared.
Deliberate differences are asserted as such and listed in docs/sdk-api.md.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

dashscope = pytest.importorskip("dashscope")
from dashscope.audio import tts_v2  # noqa: E402
from dashscope.common.error import InvalidTask  # noqa: E402
from dashscope.common.error import RequestFailure as SdkRequestFailure  # noqa: E402

import cosyvoice_stream.sync as ours  # noqa: E402
from cosyvoice_stream import CosyVoiceError, InvalidParameterError, ServerError  # noqa: E402
from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig, ServerHandle  # noqa: E402

from .support import KEY, MODEL, STEP, VOICE, RecordingCallback, client_threads  # noqa: E402

APIS = ("sdk", "ours")
LONG = " ".join(f"Sentence number {n} of a long text that keeps the server busy." for n in range(12))


@pytest.fixture(autouse=True)
def sdk_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashscope, "api_key", KEY)


@pytest.fixture
def start_server() -> Iterator[Callable[..., ServerHandle]]:
    """Embedded servers (tone engine); at the end no thread of ours is left running.

    The SDK's own socket threads are daemons that end when the server closes
    their connections; they are not ours to check.
    """
    handles: list[ServerHandle] = []
    before = {t for t in client_threads() if t.name.startswith("cosyvoice-sync")}

    def start(**config: Any) -> ServerHandle:
        handle = EmbeddedServer(
            ServerConfig(engine="tone", api_keys=frozenset({KEY}), **config)
        ).start_in_thread()
        handles.append(handle)
        return handle

    try:
        yield start
        deadline = time.monotonic() + STEP
        for thread in [
            t for t in client_threads() if t.name.startswith("cosyvoice-sync") and t not in before
        ]:
            thread.join(max(0.0, deadline - time.monotonic()))
            assert not thread.is_alive(), f"thread left running: {thread.name}"
    finally:
        for handle in handles:
            handle.stop()


def make(api: str, handle: ServerHandle, callback: Any = None, **kwargs: Any) -> Any:
    """A synthesizer of either API, 16 kHz PCM, on ``handle``."""
    if api == "sdk":
        return tts_v2.SpeechSynthesizer(
            MODEL,
            VOICE,
            format=tts_v2.AudioFormat.PCM_16000HZ_MONO_16BIT,
            url=handle.url,
            callback=callback,
            **kwargs,
        )
    return ours.SpeechSynthesizer(
        MODEL,
        VOICE,
        format=ours.AudioFormat.PCM_16000HZ_MONO_16BIT,
        url=handle.url,
        callback=callback,
        api_key=KEY,
        **kwargs,
    )


def task_of(handle: ServerHandle, synthesizer: Any) -> Any:
    return next(t for t in handle.server.tasks if t.task_id == synthesizer.get_last_request_id())


# -- signatures -----------------------------------------------------------------------
def _public(cls: type) -> list[str]:
    return sorted(
        n
        for n, v in vars(cls).items()
        if inspect.isfunction(v) and (not n.startswith("_") or n == "__init__")
    )


@pytest.mark.parametrize(
    ("theirs", "mine"),
    [
        (tts_v2.SpeechSynthesizer, ours.SpeechSynthesizer),
        (tts_v2.SpeechSynthesizerObjectPool, ours.SpeechSynthesizerObjectPool),
        (tts_v2.ResultCallback, ours.ResultCallback),
    ],
    ids=["SpeechSynthesizer", "SpeechSynthesizerObjectPool", "ResultCallback"],
)
def test_every_public_method_has_the_sdks_signature(theirs: type, mine: type) -> None:
    # The SDK's websocket-client hooks (on_message/on_error/on_close taking ``ws``) are
    # internals made public by accident, not API: they are absent here on purpose.
    sdk_internals = {"on_message", "on_error", "on_close"} if theirs is tts_v2.SpeechSynthesizer else set()
    missing = set(_public(theirs)) - sdk_internals - set(_public(mine))
    assert not missing, f"methods of the SDK missing here: {sorted(missing)}"
    for name in set(_public(theirs)) - sdk_internals:
        their_params = list(inspect.signature(getattr(theirs, name)).parameters.values())
        my_params = [
            p
            for p in inspect.signature(getattr(mine, name)).parameters.values()
            if p.kind is not p.KEYWORD_ONLY
        ]
        # Same names, same order, same defaults: positional and keyword calls both work.
        assert [p.name for p in my_params] == [p.name for p in their_params], name
        for mp, tp in zip(my_params, their_params, strict=True):
            if tp.default is not inspect.Parameter.empty:
                default = mp.default.name if hasattr(mp.default, "name") else mp.default
                expected = tp.default.name if hasattr(tp.default, "name") else tp.default
                assert default == expected, f"{name}({mp.name}=...)"
        # Extra parameters of ours are keyword-only, so no SDK call can reach them by position.
        extra = [
            p for p in inspect.signature(getattr(mine, name)).parameters.values() if p.kind is p.KEYWORD_ONLY
        ]
        assert all(p.default is not inspect.Parameter.empty for p in extra), name


def test_request_failure_has_the_sdks_attributes_and_str() -> None:
    theirs = SdkRequestFailure(request_id="t-1", message="boom", name="InternalError", http_code=44)
    mine = ours.RequestFailure(request_id="t-1", message="boom", name="InternalError", http_code=44)
    assert str(mine) == str(theirs)
    for attribute in ("request_id", "message", "name", "http_code"):
        assert getattr(mine, attribute) == getattr(theirs, attribute)
    assert list(inspect.signature(ours.RequestFailure).parameters) == list(
        inspect.signature(SdkRequestFailure).parameters
    )


# -- scenarios ------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_streaming_callback_order(api: str, start_server: Callable[..., ServerHandle]) -> None:
    handle = start_server()
    callback = RecordingCallback()
    synthesizer = make(api, handle, callback)
    synthesizer.streaming_call("Hello there, ")  # no sentence end: the server holds it, no audio yet
    assert callback.names == ["on_open"]  # on_open before streaming_call returned, nothing else yet
    synthesizer.streaming_call("how are you?")
    synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
    assert callback.closed.wait(STEP)
    names = callback.names
    assert names[0] == "on_open" and names[-2:] == ["on_complete", "on_close"]
    assert set(names[1:-2]) == {"on_event", "on_data"}
    assert len(callback.audio) == task_of(handle, synthesizer).audio_bytes_sent > 0


@pytest.mark.parametrize("api", APIS)
def test_flush_speaks_held_text_before_the_task_completes(
    api: str, start_server: Callable[..., ServerHandle]
) -> None:
    handle = start_server()
    callback = RecordingCallback()
    synthesizer = make(api, handle, callback)
    synthesizer.streaming_call("Hello there, this text has no end yet")  # held: no sentence end
    synthesizer.streaming_flush()
    assert callback.first_data.wait(STEP), "no audio after the flush"
    assert "on_complete" not in callback.names  # the task goes on
    synthesizer.streaming_call(" and here it goes on.")
    synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
    assert callback.closed.wait(STEP)
    assert callback.names[-2:] == ["on_complete", "on_close"]
    task = task_of(handle, synthesizer)
    assert task.sentences[0] == "Hello there, this text has no end yet" and task.state == "finished"


@pytest.mark.parametrize("api", APIS)
def test_async_streaming_complete_returns_at_once(
    api: str, start_server: Callable[..., ServerHandle]
) -> None:
    handle = start_server(rtf=0.5)  # the audio takes a while: completing is not instant
    callback = RecordingCallback()
    synthesizer = make(api, handle, callback)
    synthesizer.streaming_call("One sentence. And another sentence after it.")
    assert synthesizer.async_streaming_complete() is None
    assert "on_complete" not in callback.names  # returned before the task completed
    assert callback.closed.wait(STEP)
    assert callback.names[-2:] == ["on_complete", "on_close"]
    assert task_of(handle, synthesizer).state == "finished"


@pytest.mark.parametrize("api", APIS)
def test_cancel_sends_the_directive_and_completes(
    api: str, start_server: Callable[..., ServerHandle]
) -> None:
    handle = start_server(rtf=1.0)  # real time: the task is still speaking when cancelled
    callback = RecordingCallback()
    synthesizer = make(api, handle, callback)
    synthesizer.streaming_call(LONG)
    assert callback.first_data.wait(STEP)
    synthesizer.streaming_cancel()
    at_return = len(callback.calls)
    assert callback.closed.wait(STEP)
    assert callback.names[-2:] == ["on_complete", "on_close"]  # clean-up code in on_complete runs
    assert "on_error" not in callback.names
    task = task_of(handle, synthesizer)
    assert task.state == "aborted"  # the server stopped the task on the directive
    assert task.audio_bytes_sent < 16000 * 2 * 10  # far less than the whole text
    later = [name for name, _ in callback.calls[at_return:]]
    if api == "ours":
        # Better than the SDK, whose socket thread may still deliver audio after the call:
        # nothing but the final callbacks after streaming_cancel() returned, and those before.
        assert later == []
    assert "on_data" not in later or api == "sdk"


@pytest.mark.parametrize("api", APIS)
def test_misuse_raises_the_sdks_invalid_task(api: str, start_server: Callable[..., ServerHandle]) -> None:
    handle = start_server()
    expected: type[Exception] = InvalidTask if api == "sdk" else ours.InvalidTaskError
    synthesizer = make(api, handle, RecordingCallback())
    with pytest.raises(expected):
        synthesizer.streaming_flush()  # before start
    with pytest.raises(expected):
        synthesizer.streaming_cancel()  # before start
    with pytest.raises(expected):
        synthesizer.streaming_complete()  # before start
    with pytest.raises(expected):
        synthesizer.async_streaming_complete()  # before start
    synthesizer.streaming_call("Hello.")
    synthesizer.streaming_cancel()
    with pytest.raises(expected):
        synthesizer.streaming_cancel()  # twice
    with pytest.raises(expected):
        synthesizer.streaming_complete()  # after the cancel
    assert handle.server.connections_opened == 1  # misuse never opened a connection


@pytest.mark.parametrize("ending", ["cancel", "complete"])
@pytest.mark.parametrize("api", APIS)
def test_a_synthesizer_runs_one_streaming_task(
    api: str, ending: str, start_server: Callable[..., ServerHandle]
) -> None:
    """After streaming_cancel() or streaming_complete(), late text never starts another task."""
    handle = start_server()
    expected: type[Exception] = InvalidTask if api == "sdk" else ours.InvalidTaskError
    callback = RecordingCallback()
    synthesizer = make(api, handle, callback)
    synthesizer.streaming_call("Hello there, ")
    if ending == "cancel":
        synthesizer.streaming_cancel()
    else:
        synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
    assert callback.closed.wait(STEP)
    at_end = list(callback.calls)
    # What an LLM loop does when the user barged in: tokens still arrive after the cancel.
    for method, args in (
        ("streaming_call", ("Late tokens of the interrupted answer.",)),
        ("streaming_flush", ()),
        ("streaming_complete", ()),
        ("async_streaming_complete", ()),
        ("streaming_cancel", ()),
        ("streaming_call", ("And more.",)),
    ):
        with pytest.raises(expected):
            getattr(synthesizer, method)(*args)
    assert len(handle.server.tasks) == 1 and handle.server.connections_opened == 1  # nothing started
    assert callback.calls == at_end  # and no callback came of it
    # call() is the SDK's other entry point: there it fails on the socket the task closed
    # (a builtin ConnectionError); here it runs a new task (a documented difference).
    if api == "sdk":
        with pytest.raises(ConnectionError):
            synthesizer.call("Hello.")
    else:
        callback.closed.clear()
        synthesizer.call("Hello.")
        assert callback.closed.wait(STEP) and callback.names[-2:] == ["on_complete", "on_close"]
        assert len(handle.server.tasks) == 2


@pytest.mark.parametrize("api", APIS)
def test_a_borrowed_synthesizer_runs_one_streaming_task_per_borrow(
    api: str, start_server: Callable[..., ServerHandle]
) -> None:
    handle = start_server()
    module: Any = tts_v2 if api == "sdk" else ours
    expected: type[Exception] = InvalidTask if api == "sdk" else ours.InvalidTaskError
    if api == "sdk":
        pool = tts_v2.SpeechSynthesizerObjectPool(max_size=1, url=handle.url)
        leftovers = [p.synthesizer for p in pool._pool]
    else:
        pool = ours.SpeechSynthesizerObjectPool(max_size=1, url=handle.url, api_key=KEY)
        leftovers = []
    pcm = module.AudioFormat.PCM_16000HZ_MONO_16BIT
    try:
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=pcm, callback=RecordingCallback())
        leftovers.append(synthesizer)
        synthesizer.streaming_call("Hello there, ")
        synthesizer.streaming_cancel()
        with pytest.raises(expected):
            synthesizer.streaming_call("Late tokens.")
        pool.return_synthesizer(synthesizer)
        again = pool.borrow_synthesizer(MODEL, VOICE, format=pcm, callback=RecordingCallback())
        leftovers.append(again)
        again.streaming_call("A new borrow streams again, ")  # the borrow starts afresh, in both
        again.streaming_cancel()
        pool.return_synthesizer(again)
    finally:
        pool.shutdown()
        if api == "sdk":
            for synthesizer in leftovers:
                synthesizer.close()  # the SDK's shutdown forgets them without closing


@pytest.mark.parametrize("api", APIS)
def test_task_failure_raises_request_failure(api: str, start_server: Callable[..., ServerHandle]) -> None:
    handle = start_server()
    handle.server.add_fault(
        Fault(kind="fail_task", code="InternalError", message="engine exploded", after_frames=1)
    )
    synthesizer = make(api, handle)
    with pytest.raises(Exception) as info:
        synthesizer.call(LONG[:500], timeout_millis=int(STEP * 1000))
    error = info.value
    cls = SdkRequestFailure if api == "sdk" else ours.RequestFailure
    assert isinstance(error, cls)
    assert error.request_id == synthesizer.get_last_request_id()
    assert (error.name, error.message, error.http_code) == ("InternalError", "engine exploded", 44)
    assert str(error) == (
        f"Request failed, request_id: {error.request_id}, http_code: 44 error_name: InternalError,"
        " error_message: engine exploded"
    )
    if api == "ours":
        assert isinstance(error, ServerError) and isinstance(error, CosyVoiceError)  # both handlers match
        assert error.retryable and error.task_id == error.request_id


def test_failures_of_every_kind_match_both_handlers(start_server: Callable[..., ServerHandle]) -> None:
    handle = start_server()
    handle.server.add_fault(
        Fault(kind="fail_task", code="InvalidParameter", message="Request voice is invalid!")
    )
    synthesizer = make("ours", handle)
    with pytest.raises(ours.RequestFailure) as info:
        synthesizer.call("Hello.", timeout_millis=int(STEP * 1000))
    assert isinstance(info.value, InvalidParameterError) and isinstance(info.value, ValueError)
    assert info.value.permanent and type(info.value).__name__ == "InvalidParameterError"
    handle.server.add_fault(Fault(kind="handshake_status", status=401))
    with pytest.raises(ours.RequestFailure) as refused:
        synthesizer.call("Hello.")
    assert refused.value.http_code == 401 and KEY not in str(refused.value)
    from cosyvoice_stream import AuthenticationError

    assert isinstance(refused.value, AuthenticationError)


@pytest.mark.parametrize("api", APIS)
def test_call_blocks_and_returns_the_audio(api: str, start_server: Callable[..., ServerHandle]) -> None:
    handle = start_server()
    synthesizer = make(api, handle)
    audio = synthesizer.call("Hello there.", timeout_millis=int(STEP * 1000))
    assert isinstance(audio, bytes) and len(audio) == task_of(handle, synthesizer).audio_bytes_sent > 0
    assert synthesizer.get_first_package_delay() > 0
    assert synthesizer.get_response()["header"]["event"] == "task-finished"


# -- the object pool --------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
def test_pool_borrowed_synthesizers_reuse_warm_connections(
    api: str, start_server: Callable[..., ServerHandle]
) -> None:
    handle = start_server()
    if api == "sdk":
        pool = tts_v2.SpeechSynthesizerObjectPool(max_size=2, url=handle.url)
        leftovers = [p.synthesizer for p in pool._pool]
    else:
        pool = ours.SpeechSynthesizerObjectPool(max_size=2, url=handle.url, api_key=KEY)
        leftovers = []
    try:
        assert handle.server.connections_opened == 2  # pre-connected at construction
        for _ in range(3):
            pcm = (tts_v2 if api == "sdk" else ours).AudioFormat.PCM_16000HZ_MONO_16BIT
            synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=pcm)
            assert synthesizer.call("Hello.", timeout_millis=int(STEP * 1000))
            pool.return_synthesizer(synthesizer)
            leftovers.append(synthesizer)
        assert handle.server.connections_opened == 2  # every task ran on a warm connection
    finally:
        pool.shutdown()
        if api == "sdk":
            for synthesizer in leftovers:
                synthesizer.close()  # the SDK's shutdown forgets them without closing


def test_pool_differences_from_the_sdk(start_server: Callable[..., ServerHandle]) -> None:
    handle = start_server()
    with pytest.raises(ValueError):  # both: max_size out of range
        tts_v2.SpeechSynthesizerObjectPool(max_size=0, url=handle.url)
    with pytest.raises(ValueError, match="max_size"):
        ours.SpeechSynthesizerObjectPool(max_size=0, url=handle.url, api_key=KEY)
    sdk_pool = tts_v2.SpeechSynthesizerObjectPool(max_size=1, url=handle.url)
    try:
        # The SDK logs and returns False for an object it never lent; here that is an error.
        assert sdk_pool.return_synthesizer(object()) is False
        assert tts_v2.SpeechSynthesizerObjectPool(max_size=1, url=handle.url) is sdk_pool  # a singleton
    finally:
        for item in list(sdk_pool._pool):
            item.synthesizer.close()
        sdk_pool.shutdown()
    pool = ours.SpeechSynthesizerObjectPool(max_size=1, url=handle.url, api_key=KEY)
    try:
        with pytest.raises(InvalidParameterError, match="borrowed from this pool"):
            pool.return_synthesizer(object())  # type: ignore[arg-type]
        other = ours.SpeechSynthesizerObjectPool(max_size=1, url=handle.url, api_key=KEY)
        other.shutdown()
        assert other is not pool  # not a singleton: each pool owns its connections
    finally:
        pool.shutdown()
