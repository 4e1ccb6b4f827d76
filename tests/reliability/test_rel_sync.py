"""Faults through the synchronous SDK-style API (``cosyvoice_stream.sync``): ``call()`` raises
the typed error (never partial audio) within a bounded time, callbacks get ``on_error`` then
``on_close``, the threads it started end, and the next call works."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from reliability_support import fd_count, tags_of

from cosyvoice_stream import (
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    ProtocolError,
    ThrottlingError,
    Timeouts,
    VoiceModelMismatchError,
)
from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig

TEXT = "one two three four five six."
FAST = Timeouts(connect=1.0, start=0.5, first_audio=1.0, idle=0.5, text=3.0, close=0.5)

SYNC_FAULTS = [
    pytest.param(Fault("handshake_status", status=401), AuthenticationError, id="handshake-401"),
    pytest.param(Fault("handshake_status", status=429), ThrottlingError, id="handshake-429"),
    pytest.param(
        Fault("stall", stage="before_started", seconds=0.8), ClientTimeoutError, id="no-task-started"
    ),
    pytest.param(
        Fault("fail_task", stage="before_started", message="[tts:]Engine return error code: 418"),
        VoiceModelMismatchError,
        id="418-before-audio",
    ),
    pytest.param(
        Fault("fail_task", after_frames=3, code="Throttling.RateQuota", message="rate limit"),
        ThrottlingError,
        id="throttling-mid-audio",
    ),
    pytest.param(Fault("drop", after_frames=3), ConnectionLostError, id="drop-mid-audio"),
    pytest.param(Fault("drop", stage="during_finish"), ConnectionLostError, id="drop-during-finish"),
    pytest.param(Fault("stall", after_frames=3, seconds=0.8), ClientTimeoutError, id="stall-mid-audio"),
    pytest.param(
        Fault("garbage", payload="malformed_json", after_frames=3), ProtocolError, id="malformed-json"
    ),
]


@pytest.fixture(scope="module")
def thread_server():
    with EmbeddedServer(ServerConfig(engine="tone")).start_in_thread() as handle:
        yield handle.server


def wait_for_threads(baseline: set[int], timeout: float = 5.0) -> list[str]:
    """Threads started since ``baseline`` that are still alive after a bounded join."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.ident not in baseline:
            thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threading.enumerate() if t.ident not in baseline and t.is_alive()]


def synthesizer(url: str, **kwargs: Any) -> Any:
    from cosyvoice_stream.sync import AudioFormat, SpeechSynthesizer

    return SpeechSynthesizer(
        "cosyvoice-v3-flash",
        "longanyang",
        AudioFormat.PCM_24000HZ_MONO_16BIT,
        url=url,
        timeouts=FAST,
        **kwargs,
    )


@pytest.mark.parametrize(("fault", "error"), SYNC_FAULTS)
def test_sync_call_raises_the_typed_error_then_the_next_call_works(
    thread_server: EmbeddedServer, fault: Fault, error: type[CosyVoiceError]
) -> None:
    threads = {t.ident for t in threading.enumerate()}
    fds = fd_count()
    thread_server.add_fault(fault)
    started = time.monotonic()
    with pytest.raises(error) as info:
        synthesizer(thread_server.url).call(TEXT)
    assert time.monotonic() - started < 2.0
    assert str(info.value)
    assert thread_server.pending_faults == []
    audio = synthesizer(thread_server.url).call("The next call.")
    record = next(t for t in reversed(thread_server.tasks) if t.texts == ["The next call."])
    assert audio is not None and len(audio) == record.audio_bytes_sent and tags_of(audio) == {record.tag}
    assert not wait_for_threads(threads), "threads left running"
    deadline = time.monotonic() + 5
    while fd_count() > fds and time.monotonic() < deadline:  # sockets close asynchronously
        time.sleep(0.01)
    assert fd_count() <= fds


@pytest.mark.parametrize(("fault", "error"), SYNC_FAULTS[4:])
def test_sync_callbacks_get_on_error_then_on_close(
    thread_server: EmbeddedServer, fault: Fault, error: type[CosyVoiceError]
) -> None:
    from cosyvoice_stream.sync import ResultCallback

    events: list[str] = []
    closed = threading.Event()
    data = bytearray()

    class Recorder(ResultCallback):
        def on_open(self) -> None:
            events.append("open")

        def on_data(self, chunk: bytes) -> None:
            data.extend(chunk)

        def on_complete(self) -> None:
            events.append("complete")

        def on_error(self, message: str) -> None:
            events.append("error")
            assert isinstance(getattr(message, "error", None), error)

        def on_close(self) -> None:
            events.append("close")
            closed.set()

    thread_server.add_fault(fault)
    synth = synthesizer(thread_server.url, callback=Recorder())
    synth.streaming_call(TEXT)
    synth.streaming_complete(complete_timeout_millis=3000)
    assert closed.wait(3)
    assert events == ["open", "error", "close"], events
    record = next(t for t in reversed(thread_server.tasks) if t.texts == [TEXT])
    assert len(data) <= record.audio_bytes_sent and tags_of(bytes(data)) <= {record.tag}
