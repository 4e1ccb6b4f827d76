"""``SpeechSynthesizerObjectPool``'s prestarted tasks: proven by what the server saw.

A primed task is a run-task the pool sent ahead of time; on the server it is
a task with no text until a borrower uses it. These tests count them, check
which task a borrower's call ran as, that a task primed for other parameters
never gives a borrower anything, and that no primed task ever meets the
server's text timeout.
"""

from __future__ import annotations

import threading
from typing import Any

from cosyvoice_stream import Timeouts
from cosyvoice_stream.server import ServerHandle
from cosyvoice_stream.sync import AudioFormat, SpeechSynthesizerObjectPool

from .support import KEY, MODEL, STEP, VOICE, FreezableProxy, RecordingCallback, until

PCM = AudioFormat.PCM_16000HZ_MONO_16BIT
MS = int(STEP * 1000)
OTHER_VOICE = "longxiaochun_v3"


def pool_for(server: ServerHandle, **kwargs: Any) -> SpeechSynthesizerObjectPool:
    kwargs.setdefault("max_size", 1)
    return SpeechSynthesizerObjectPool(url=server.url, api_key=KEY, **kwargs)


def unused(server: ServerHandle) -> list[Any]:
    """Tasks that got no text: the primed ones (used or not yet)."""
    return [t for t in server.server.tasks if not t.texts]


def test_a_returned_connection_holds_the_next_task_already_started(server: ServerHandle) -> None:
    pool = pool_for(server)
    try:
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        assert synthesizer.call("Hello.", timeout_millis=MS)
        pool.return_synthesizer(synthesizer)
        assert pool.primed_connections == 1
        until(lambda: len(server.server.tasks) == 2, "the primed run-task to reach the server")
        primed = server.server.tasks[1]
        assert primed.texts == [] and primed.state == "started"
        assert primed.parameters == server.server.tasks[0].parameters  # the same run-task parameters
        for n in range(3):
            synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
            assert synthesizer.get_last_request_id() == primed.task_id  # the task it will run
            audio = synthesizer.call("Hello again.", timeout_millis=MS)
            assert synthesizer.get_last_request_id() == primed.task_id  # it ran as the primed task
            assert audio is not None and len(audio) == primed.audio_bytes_sent > 0
            assert primed.state == "finished" and primed.texts == ["Hello again."]
            pool.return_synthesizer(synthesizer)
            until(lambda: len(server.server.tasks) == 3 + n, "the next primed run-task")  # noqa: B023
            primed = server.server.tasks[-1]
        # One run-task per task, each sent ahead of the borrower's call; one handshake in all.
        assert server.server.connections_opened == 1
        assert [t.state for t in server.server.tasks] == ["finished"] * 4 + ["started"]
    finally:
        pool.shutdown()
    until(lambda: server.server.active_connections == 0, "the pool's connection to close")


def test_streaming_borrowers_start_on_a_primed_task_too(server: ServerHandle) -> None:
    pool = pool_for(server)
    try:
        callback = RecordingCallback()
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, callback=callback)
        synthesizer.streaming_call("Hello there. ")
        synthesizer.streaming_complete(MS)
        pool.return_synthesizer(synthesizer)
        until(lambda: len(server.server.tasks) == 2, "the primed run-task to reach the server")
        primed = server.server.tasks[1]
        assert "enable_ssml" not in primed.parameters  # primed as the streamed task was, not as call()
        callback = RecordingCallback()
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, callback=callback)
        synthesizer.streaming_call("Streamed again, ")  # held by the server: no audio yet
        assert callback.names == ["on_open"]  # as without priming: on_open before streaming_call returned
        synthesizer.streaming_call("and done.")
        synthesizer.streaming_complete(MS)
        assert callback.closed.wait(STEP)
        assert callback.names[0] == "on_open" and callback.names[-2:] == ["on_complete", "on_close"]
        assert synthesizer.get_last_request_id() == primed.task_id
        assert len(callback.audio) == primed.audio_bytes_sent > 0
        pool.return_synthesizer(synthesizer)
        assert server.server.connections_opened == 1
    finally:
        pool.shutdown()


def test_a_borrow_with_seen_parameters_is_primed_when_borrowed(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=2)
    try:
        first = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        assert first.call("Hello.", timeout_millis=MS)
        pool.return_synthesizer(first)  # primes that connection; the other one is plain
        until(lambda: len(server.server.tasks) == 2, "the primed run-task")
        # a takes the primed one; parameters seen: the plain one is primed for them at once,
        # as a spare, and b takes it.
        a = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        b = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        until(lambda: len(server.server.tasks) == 3, "the run-task sent at borrow time")
        assert {a.get_last_request_id(), b.get_last_request_id()} == {t.task_id for t in unused(server)}
        assert a.call("One.", timeout_millis=MS) and b.call("Two.", timeout_millis=MS)
        assert len(server.server.tasks) == 3  # both calls ran as the primed tasks
        # Parameters never seen: no run-task before the call.
        pool.return_synthesizer(a)
        c = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, volume=20)
        assert not [t for t in server.server.tasks if t.parameters.get("volume") == 20]
        assert c.call("Three.", timeout_millis=MS)
        assert [t.texts for t in server.server.tasks if t.parameters.get("volume") == 20] == [["Three."]]
        for synthesizer in (b, c):
            pool.return_synthesizer(synthesizer)
    finally:
        pool.shutdown()


def test_parameters_in_use_take_over_a_connection_primed_for_others(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=2)
    try:
        for voice in (VOICE, OTHER_VOICE):  # one connection primed for each voice
            synthesizer = pool.borrow_synthesizer(MODEL, voice, format=PCM)
            assert synthesizer.call("Hello.", timeout_millis=MS)
            pool.return_synthesizer(synthesizer)
        until(lambda: len(unused(server)) == 2, "both primed run-tasks")
        other_primed = next(t for t in unused(server) if t.parameters["voice"] == OTHER_VOICE)
        held = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)  # VOICE's primed task
        # VOICE is in use: the connection primed for OTHER_VOICE is turned over to it, off this path.
        until(lambda: other_primed.state == "aborted", "the other voice's primed task to be ended")
        until(lambda: len(unused(server)) == 3, "the connection to be primed for the voice in use")
        turned = unused(server)[-1]
        assert turned.parameters["voice"] == VOICE and turned.connection_id == other_primed.connection_id
        assert other_primed.texts == [] and other_primed.audio_bytes_sent == 0
        until(lambda: pool.primed_connections == 1, "the turned connection back in the pool")
        next_one = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        assert next_one.call("Right after.", timeout_millis=MS)
        assert next_one.get_last_request_id() == turned.task_id  # it started on the turned task
        assert held.call("And the held one.", timeout_millis=MS)
        for synthesizer in (held, next_one):
            pool.return_synthesizer(synthesizer)
        assert server.server.connections_opened == 2
    finally:
        pool.shutdown()


def test_a_borrow_with_other_parameters_gets_nothing_of_a_primed_task(server: ServerHandle) -> None:
    pool = pool_for(server)  # one connection: the only warm one holds a task primed for VOICE
    try:
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        assert synthesizer.call("Hello.", timeout_millis=MS)
        pool.return_synthesizer(synthesizer)
        until(lambda: len(server.server.tasks) == 2, "the primed run-task")
        primed = server.server.tasks[1]
        for other in (
            {"voice": OTHER_VOICE},
            {"voice": VOICE, "speech_rate": 1.5},
            {"voice": VOICE, "additional_params": {"enable_markdown_filter": True}},
        ):
            callback = RecordingCallback()
            borrowed = pool.borrow_synthesizer(MODEL, format=PCM, callback=callback, **other)
            borrowed.call("A different task.")
            assert callback.closed.wait(STEP)
            assert callback.names[-2:] == ["on_complete", "on_close"] and "on_error" not in callback.names
            task = next(t for t in server.server.tasks if t.task_id == borrowed.get_last_request_id())
            assert task.task_id != primed.task_id and task.texts == ["A different task."]
            assert len(callback.audio) == task.audio_bytes_sent > 0  # its own audio and nothing else
            assert all(task.task_id in message for message in callback.values("on_event"))
            pool.return_synthesizer(borrowed)
            # The primed task was ended by the pool, off the borrower's path, without a word.
            ended = primed
            until(lambda: ended.state == "aborted", "the mismatched primed task to be ended")  # noqa: B023
            assert ended.texts == [] and ended.audio_bytes_sent == 0
            until(lambda: pool.primed_connections == 1, "the returned connection to be primed")
            until(lambda: unused(server)[-1].state == "started", "its run-task to reach the server")
            primed = unused(server)[-1]
            assert primed.parameters == task.parameters  # primed for the task that just ran
        assert not [t for t in server.server.tasks if t.state == "failed"]
    finally:
        pool.shutdown()


def test_a_pool_without_prestart_sends_no_run_task_ahead(server: ServerHandle) -> None:
    pool = pool_for(server, prestart=False)
    try:
        for _ in range(2):
            synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
            assert synthesizer.call("Hello.", timeout_millis=MS)
            pool.return_synthesizer(synthesizer)
        assert pool.primed_connections == 0 and unused(server) == []
        assert server.server.connections_opened == 1
    finally:
        pool.shutdown()


def test_no_primed_task_ever_meets_the_servers_text_timeout(make_server: Any) -> None:
    server = make_server(text_timeout_s=2.0)
    timeouts = Timeouts(server_text=2.0)  # the window this server gives: primed tasks live 1.57 s
    pool = pool_for(server, timeouts=timeouts)
    try:
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        assert synthesizer.call("Hello.", timeout_millis=MS)
        pool.return_synthesizer(synthesizer)
        # Idle in the pool: each primed task is ended and replaced before the server's window ends.
        until(lambda: len(unused(server)) >= 3, "two re-primes", timeout=3 * STEP)
        # Lent out and not used: the pool takes it back in time as well.
        callback = RecordingCallback()
        borrowed = pool.borrow_synthesizer(MODEL, VOICE, format=PCM, callback=callback)
        held = borrowed.get_last_request_id()
        held_task = next(t for t in server.server.tasks if t.task_id == held)
        until(lambda: held_task.state == "aborted", "the lent primed task to be ended", timeout=3 * STEP)
        until(lambda: len(unused(server)) >= 6, "more re-primes", timeout=3 * STEP)
        until(lambda: pool.primed_connections == 1, "the re-primed connection back in the pool")
        primed_so_far = unused(server)
        borrowed.call("Still fine.", timeout_millis=MS)
        assert callback.closed.wait(STEP)
        assert callback.names[-2:] == ["on_complete", "on_close"] and "on_error" not in callback.names
        task = next(t for t in server.server.tasks if t.task_id == borrowed.get_last_request_id())
        print(
            [(t.task_id[:6], t.state, t.texts, t.error_code) for t in server.server.tasks],
            task.task_id[:6],
            callback.names,
        )
        assert task.state == "finished" and len(callback.audio) == task.audio_bytes_sent > 0
        pool.return_synthesizer(borrowed)
        assert not [t for t in server.server.tasks if t.state == "failed"]  # no text timeout, ever
        assert {t.state for t in server.server.tasks[:-1] if not t.texts} <= {"aborted", "started"}
        # Re-primed on the same connection throughout (the call itself may have found that
        # connection busy being re-primed, and connected: that is not what this test is about).
        assert len({t.connection_id for t in primed_so_far}) == 1
    finally:
        pool.shutdown()


def test_shutdown_closes_primed_connections(server: ServerHandle) -> None:
    pool = pool_for(server, max_size=2)
    synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
    assert synthesizer.call("Hello.", timeout_millis=MS)
    pool.return_synthesizer(synthesizer)
    lent = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)  # holding the primed task, unused
    until(lambda: len(unused(server)) == 2, "the lent task and the spare's to reach the server")
    assert lent.get_last_request_id() in {t.task_id for t in unused(server)}
    assert pool.primed_connections == 1  # the other connection, primed as a spare
    pool.shutdown()
    until(lambda: server.server.active_connections == 0, "every connection to close")
    assert lent.call("On a connection of its own.", timeout_millis=MS)


def test_shutdown_does_not_wait_for_a_primed_task_the_server_no_longer_answers(make_server: Any) -> None:
    server = make_server(text_timeout_s=2.0)
    proxy = FreezableProxy(server.server.port)
    try:
        timeouts = Timeouts(server_text=2.0, start=30.0)  # ending a primed task may wait 30 s
        pool = SpeechSynthesizerObjectPool(max_size=1, url=proxy.url(), api_key=KEY, timeouts=timeouts)
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, format=PCM)
        assert synthesizer.call("Hello.", timeout_millis=MS)
        pool.return_synthesizer(synthesizer)
        proxy.freeze()  # the primed task's end will never be answered
        until(lambda: pool._working != [], "the pool's thread to start ending the aged primed task")
        stopper = threading.Thread(target=pool.shutdown, name="test-shutdown")
        stopper.start()
        stopper.join(STEP)  # not the 30 s the unanswered end of the primed task could take
        assert not stopper.is_alive() and not pool._maintainer.is_alive()
    finally:
        proxy.close()
