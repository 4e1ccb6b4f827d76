"""Faults of the sync layer (issue 14: #4, #9, #12, #13, TLS), each against a scripted server on real sockets.

Every scenario runs the synthesizer in a worker thread joined under a bound:
a deadline that does not hold fails the test instead of hanging it.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cosyvoice_stream import ClientTimeoutError, ConnectionLostError, CosyVoiceError, ProtocolError
from cosyvoice_stream.server import ServerHandle
from cosyvoice_stream.sync import AudioFormat, SpeechSynthesizer, Timeouts, WaitTimeoutError

from .scripted import BINARY, TEXT, RawPeer, ScriptedServer, event, frame
from .support import KEY, MODEL, STEP, VOICE, RecordingCallback, client_threads, join_new_threads

PCM = AudioFormat.PCM_16000HZ_MONO_16BIT
#: Client deadlines far above every bound asserted below: an error that came by one of them
#: would have come too late.
SLOW = Timeouts(connect=30, start=30, first_audio=30, idle=30, text=30)


@pytest.fixture
def scripted() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []
    before = set(client_threads())

    def start(handler: Callable[[RawPeer], None], **kwargs: Any) -> ScriptedServer:
        server = ScriptedServer(handler, **kwargs)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()  # also unblocks a client that a failed deadline left waiting
    leaked = join_new_threads(before, timeout=STEP)
    assert not leaked, f"threads left running: {leaked}"


def bounded(action: Callable[[], Any], within: float) -> tuple[BaseException | None, float]:
    """Run ``action`` on a worker thread; it must end within ``within`` s. Its exception and duration."""
    outcome: list[BaseException | None] = []
    started = time.monotonic()

    def work() -> None:
        try:
            action()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=work, name="cosyvoice-test-worker")
    worker.start()
    worker.join(within)
    assert not worker.is_alive(), f"still blocked after {within:g} s: the deadline did not hold"
    return outcome[0], time.monotonic() - started


def synth(url: str, **kwargs: Any) -> SpeechSynthesizer:
    kwargs.setdefault("timeouts", SLOW)
    kwargs.setdefault("ping_interval", None)
    return SpeechSynthesizer(MODEL, VOICE, format=PCM, url=url, api_key=KEY, **kwargs)


# -- #4: deadlines are wall-clock deadlines, whatever trickles in ---------------------------
def test_connect_deadline_holds_against_a_trickled_handshake(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(lambda peer: peer.handshake(trickle=0.2, padding=5000))
    synthesizer = synth(server.url(), timeouts=Timeouts(connect=1.0))
    error, _ = bounded(lambda: synthesizer.call("Hello."), within=1.0 + STEP / 2)
    assert isinstance(error, ClientTimeoutError) and error.code == "ConnectTimeout", error


def test_call_timeout_holds_against_a_trickled_handshake(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(lambda peer: peer.handshake(trickle=0.2, padding=5000))
    synthesizer = synth(server.url())
    error, _ = bounded(lambda: synthesizer.call("Hello.", timeout_millis=1000), within=1.0 + STEP / 2)
    assert isinstance(error, WaitTimeoutError) and isinstance(error, TimeoutError), error


def _trickled_audio(peer: RawPeer) -> None:
    peer.handshake()
    peer.start_task()
    peer.send_raw(frame(BINARY, b"", length=10_000)[:4])  # a frame header announcing 10,000 bytes...
    peer.trickle(b"\0" * 10_000, 0.2)  # ...that come one by one


def test_call_timeout_is_a_wall_clock_deadline_against_a_trickled_frame(
    scripted: Callable[..., ScriptedServer],
) -> None:
    server = scripted(_trickled_audio)
    synthesizer = synth(server.url())
    error, _ = bounded(lambda: synthesizer.call("Hello.", timeout_millis=1000), within=1.0 + STEP / 2)
    assert isinstance(error, WaitTimeoutError), error


def test_idle_deadline_holds_against_a_trickled_frame(scripted: Callable[..., ScriptedServer]) -> None:
    server = scripted(_trickled_audio)
    synthesizer = synth(server.url(), timeouts=Timeouts(first_audio=1.0, idle=1.0))
    error, _ = bounded(lambda: synthesizer.call("Hello."), within=1.0 + STEP / 2)
    assert isinstance(error, ClientTimeoutError) and not isinstance(error, WaitTimeoutError), error


# -- #9: only this task's progress re-arms a deadline ---------------------------------------
@pytest.mark.parametrize("chatter", ["unknown-event", "other-task", "other-task-audio-event"])
def test_chatter_does_not_keep_a_dead_task_alive(
    scripted: Callable[..., ScriptedServer], chatter: str
) -> None:
    def handler(peer: RawPeer) -> None:
        peer.handshake()
        task_id = peer.start_task()
        while not peer.stop.wait(0.1):
            if chatter == "unknown-event":
                peer.send(event(task_id, "something-new"))
            elif chatter == "other-task":
                peer.send(event("another-task", "result-generated", {"output": {"type": "sentence-begin"}}))
            else:
                peer.send(event("another-task", "task-started"))

    server = scripted(handler)
    synthesizer = synth(server.url(), timeouts=Timeouts(first_audio=1.0, idle=1.0, text=1.0))
    error, _ = bounded(lambda: synthesizer.call("Hello."), within=1.0 + STEP / 2)
    assert isinstance(error, ClientTimeoutError) and "first audio" in str(error), error


def test_chatter_does_not_re_arm_the_text_deadline(scripted: Callable[..., ScriptedServer]) -> None:
    def handler(peer: RawPeer) -> None:
        peer.handshake()
        task_id = peer.start_task()
        while not peer.stop.wait(0.1):
            peer.send(event(task_id, "something-new"))

    server = scripted(handler)
    callback = RecordingCallback()
    synthesizer = synth(server.url(), timeouts=Timeouts(text=1.0), callback=callback)
    synthesizer.streaming_call("Some text, and then nothing more for a while")
    assert callback.closed.wait(1.0 + STEP / 2), "the text deadline did not hold"
    assert callback.names == ["on_open", "on_error", "on_close"]
    synthesizer.close()


# -- #12: a malformed frame is a ProtocolError, retryable=False, at once ----------------------
MALFORMED = {
    "masked": frame(BINARY, b"\0" * 64, masked=True),
    "oversized": frame(BINARY, b"", length=1 << 40)[:10],
    "invalid-utf8": frame(TEXT, b'{"header": "\xff\xfe"}'),
    "reserved-opcode": frame(0x3, b"x"),
    "rsv-bits": frame(TEXT, b"{}", rsv=0b100),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_frames_are_protocol_errors_at_once(
    scripted: Callable[..., ScriptedServer], kind: str
) -> None:
    def handler(peer: RawPeer) -> None:
        peer.handshake()
        peer.start_task()
        peer.send_raw(MALFORMED[kind])
        peer.hold()

    server = scripted(handler)
    synthesizer = synth(server.url())
    error, _ = bounded(lambda: synthesizer.call("Hello."), within=STEP)  # SLOW's deadlines are 30 s
    assert isinstance(error, ProtocolError) and error.retryable is False, error


def test_malformed_frame_reaches_on_error_at_once(scripted: Callable[..., ScriptedServer]) -> None:
    def handler(peer: RawPeer) -> None:
        peer.handshake()
        peer.start_task()
        peer.send_raw(MALFORMED["masked"])
        peer.hold()

    server = scripted(handler)
    callback = RecordingCallback()
    synth(server.url(), callback=callback).streaming_call("Hello.")
    assert callback.closed.wait(STEP)
    assert callback.names == ["on_open", "on_error", "on_close"]  # no audio from the masked frame
    message = callback.values("on_error")[0]
    assert isinstance(message.error, ProtocolError) and not message.error.retryable


def test_close_frame_without_tcp_close_ends_the_task_at_once(scripted: Callable[..., ScriptedServer]) -> None:
    def handler(peer: RawPeer) -> None:
        peer.handshake()
        peer.start_task()
        peer.send_raw(frame(0x8, (1013).to_bytes(2, "big") + b"try again later"))
        peer.hold()  # no TCP close

    server = scripted(handler)
    synthesizer = synth(server.url())
    error, _ = bounded(lambda: synthesizer.call("Hello."), within=STEP)
    assert isinstance(error, ConnectionLostError) and "1013" in str(error) and "try again later" in str(error)


# -- #13: after the API said the task is over, only on_close ------------------------------------
class GatedCallback(RecordingCallback):
    """Its first ``on_data`` blocks until ``gate`` is set: callbacks pile up behind it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def on_data(self, data: bytes) -> None:
        super().on_data(data)
        self.gate.wait(STEP)


def test_no_callback_but_on_close_after_streaming_complete_timed_out(server: ServerHandle) -> None:
    callback = GatedCallback()
    synthesizer = SpeechSynthesizer(MODEL, VOICE, format=PCM, url=server.url, api_key=KEY, callback=callback)
    synthesizer.streaming_call("Hello there. This sentence makes several frames of audio.")
    assert callback.first_data.wait(STEP)  # the dispatcher is now stuck in on_data
    run = synthesizer._run
    assert run is not None
    with pytest.raises(WaitTimeoutError):
        # The server finishes quickly; the callbacks do not, and the caller gives up on them.
        synthesizer.streaming_complete(complete_timeout_millis=500)
    told = len(callback.calls)
    assert run.done.wait(STEP)  # the task itself ended on the server's side meanwhile
    callback.gate.set()
    assert callback.closed.wait(STEP)
    assert [name for name, _ in callback.calls[told:]] == ["on_close"]


def test_no_callback_but_on_close_after_call_timed_out(scripted: Callable[..., ScriptedServer]) -> None:
    def handler(peer: RawPeer) -> None:
        peer.handshake()
        task_id = peer.start_task()
        peer.json()  # the text
        for _ in range(30):
            peer.send(b"\0" * 320)
        peer.json()  # finish-task
        peer.send(event(task_id, "task-finished"))
        peer.hold()

    server = scripted(handler)
    callback = GatedCallback()
    synthesizer = synth(server.url(), callback=callback)
    synthesizer.streaming_call("Hello.")
    assert callback.first_data.wait(STEP)
    with pytest.raises(WaitTimeoutError):
        synthesizer.streaming_complete(complete_timeout_millis=300)
    told = len(callback.calls)
    callback.gate.set()
    assert callback.closed.wait(STEP)
    assert [name for name, _ in callback.calls[told:]] == ["on_close"]


# -- TLS: a certificate that fails verification is permanent --------------------------------------
def test_tls_verification_failure_is_permanent_and_not_retryable(
    scripted: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = scripted(lambda peer: peer.handshake(), tls=context)
    synthesizer = synth(server.url("localhost"))
    error, _ = bounded(lambda: synthesizer.call("Hello."), within=STEP)
    assert isinstance(error, CosyVoiceError) and "certificate" in str(error), error
    assert error.retryable is False and error.permanent is True


# -- the cancel directive and the flush, on the wire -------------------------------------------
def test_cancel_unanswered_cuts_the_connection_within_the_timeout(
    scripted: Callable[..., ScriptedServer],
) -> None:
    received: list[dict[str, Any]] = []

    def handler(peer: RawPeer) -> None:
        peer.handshake()
        peer.start_task()
        received.append(peer.json())  # the text
        while not peer.stop.is_set():  # audio, and the cancel directive ignored
            peer.send(b"\0" * 320)
            peer.stop.wait(0.02)

    server = scripted(handler)
    callback = RecordingCallback()
    synthesizer = synth(server.url(), callback=callback)
    synthesizer.streaming_call("Hello.")
    assert callback.first_data.wait(STEP)
    error, _ = bounded(
        lambda: synthesizer.streaming_cancel(complete_timeout_millis=500), within=0.5 + STEP / 2
    )
    assert error is None
    at_return = list(callback.calls)
    assert [name for name, _ in at_return[-2:]] == ["on_complete", "on_close"]
    run = synthesizer._run
    assert run is not None and run.done.is_set()
    assert callback.calls == at_return  # nothing stale after it returned


def test_flush_and_cancel_are_the_sdks_messages(scripted: Callable[..., ScriptedServer]) -> None:
    received: list[dict[str, Any]] = []

    def handler(peer: RawPeer) -> None:
        peer.handshake()
        task_id = peer.start_task()
        received.append(peer.json())  # text
        received.append(peer.json())  # flush
        received.append(peer.json())  # cancel
        peer.send(event(task_id, "task-finished"))
        peer.hold()

    server = scripted(handler)
    callback = RecordingCallback()
    synthesizer = synth(server.url(), callback=callback)
    synthesizer.streaming_call("Hello")
    synthesizer.streaming_flush()
    synthesizer.streaming_cancel(complete_timeout_millis=int(STEP * 1000))
    text, flush, cancel = received
    assert text["header"]["action"] == "continue-task" and text["payload"]["input"] == {"text": "Hello"}
    assert flush["header"]["action"] == "continue-task" and flush["payload"]["input"] == {"flush": True}
    assert cancel["header"]["action"] == "finish-task" and cancel["payload"]["input"] == {
        "directive": "cancel"
    }
    assert {m["header"]["task_id"] for m in received} == {synthesizer.get_last_request_id()}
    assert callback.names == ["on_open", "on_complete", "on_close"]
