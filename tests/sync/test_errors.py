"""Where the SDK is known to fail, the synchronous API does better."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time

import pytest

from cosyvoice_stream import (
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    InvalidParameterError,
    ProtocolError,
    SSMLError,
    TextLimitError,
    VoiceModelMismatchError,
)
from cosyvoice_stream.server import Fault, ServerHandle
from cosyvoice_stream.sync import (
    AudioFormat,
    ErrorMessage,
    InvalidTaskError,
    SpeechSynthesizer,
    Timeouts,
    WaitTimeoutError,
)

from .support import KEY, MODEL, STEP, VOICE, FreezableProxy, RecordingCallback

PCM = AudioFormat.PCM_16000HZ_MONO_16BIT
TEXT = "Hello there. This is a test of the synchronous API. It has three sentences."
ERROR_418 = "[tts:]Engine return error code: 418"
MS = int(STEP * 1000)


def synth(server: ServerHandle, **kwargs: object) -> SpeechSynthesizer:
    kwargs.setdefault("format", PCM)
    kwargs.setdefault("url", server.url)
    kwargs.setdefault("api_key", KEY)
    return SpeechSynthesizer(MODEL, VOICE, **kwargs)  # type: ignore[arg-type]


# -- handshake ------------------------------------------------------------------
@pytest.mark.parametrize("status", [401, 403])
def test_refused_handshake_raises_authentication_error_at_once(server: ServerHandle, status: int) -> None:
    server.server.add_fault(Fault(kind="handshake_status", status=status))
    callback = RecordingCallback()
    started = time.monotonic()
    with pytest.raises(AuthenticationError) as info:
        synth(server, callback=callback).call(TEXT)
    assert time.monotonic() - started < 1.0  # not a connect timeout
    assert info.value.code == f"HTTP{status}" and not info.value.retryable
    assert callback.calls == []  # nothing started: nothing delivered
    assert server.server.tasks == []


def test_wrong_key_is_refused_and_never_shown(server: ServerHandle, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-wrong-secret-key-42"
    caplog.set_level(logging.DEBUG)
    synthesizer = synth(server, api_key=secret)
    with pytest.raises(AuthenticationError) as info:
        synthesizer.streaming_call("Hello.")
    for text in (str(info.value), repr(info.value), repr(synthesizer), caplog.text):
        assert secret not in text


def test_connection_refused_is_a_connection_error() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    synthesizer = SpeechSynthesizer(MODEL, VOICE, url=f"ws://127.0.0.1:{port}/", api_key=KEY)
    with pytest.raises(ConnectionLostError) as info:
        synthesizer.call("Hello.")
    assert info.value.code == "ConnectFailed" and info.value.retryable


# -- task-failed ----------------------------------------------------------------
def test_task_failed_raises_from_call_instead_of_partial_audio(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="fail_task", message=ERROR_418, after_frames=2))
    synthesizer = synth(server)
    with pytest.raises(VoiceModelMismatchError) as info:
        synthesizer.call(TEXT)
    (task,) = server.server.tasks
    assert task.frames_sent == 2  # audio was on its way: the SDK used to return it
    assert info.value.code == "InvalidParameter"
    assert info.value.task_id == task.task_id == synthesizer.get_last_request_id()
    assert synthesizer.get_last_error() is info.value
    response = synthesizer.get_response()
    assert response is not None and response["header"]["event"] == "task-failed"


def test_task_failed_raises_from_streaming_complete(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="fail_task", code="Throttling.RateQuota", message="rate quota"))
    synthesizer = synth(server)
    synthesizer.streaming_call("Hello there, ")  # no sentence end: nothing is synthesized yet
    synthesizer.streaming_call("and more text")
    with pytest.raises(CosyVoiceError) as info:
        synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
    assert type(info.value).__name__ == "ThrottlingError" and info.value.retryable


def test_task_failed_goes_to_on_error_with_a_callback(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="fail_task", message=ERROR_418, after_frames=1))
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback)
    assert synthesizer.call(TEXT) is None
    assert callback.closed.wait(STEP)
    assert callback.names[0] == "on_open" and callback.names[-2:] == ["on_error", "on_close"]
    assert "on_complete" not in callback.names
    assert len(callback.values("on_data")) == 1  # the frame sent before the failure
    (message,) = callback.values("on_error")
    header = json.loads(message)["header"]  # the server's task-failed JSON, as in the SDK
    assert header["event"] == "task-failed" and header["error_message"] == ERROR_418
    assert isinstance(message, ErrorMessage) and isinstance(message.error, VoiceModelMismatchError)
    # streaming_complete() is not for call(); the outcome already went to on_error


def test_task_failed_before_started_raises_from_the_first_call(server: ServerHandle) -> None:
    server.server.add_fault(
        Fault(kind="fail_task", message="Request voice is invalid!", stage="before_started")
    )
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback)
    with pytest.raises(InvalidParameterError, match="voice is invalid"):
        synthesizer.streaming_call("Hello.")
    assert callback.calls == []  # as in the SDK: no on_open, so no on_error/on_close either


def test_malformed_server_message_is_a_protocol_error(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="garbage", payload="malformed_json", after_frames=1))
    with pytest.raises(ProtocolError, match="malformed JSON"):
        synth(server).call(TEXT)


# -- lost connections -------------------------------------------------------------
def test_disconnect_mid_audio_raises_connection_lost(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="drop", after_frames=2, stage="audio"))
    with pytest.raises(ConnectionLostError) as info:
        synth(server).call(TEXT)
    assert info.value.retryable and info.value.code == "ConnectionLost"


def test_disconnect_mid_audio_with_a_callback(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="drop", after_frames=2, stage="audio"))
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback)
    synthesizer.streaming_call(TEXT)
    assert synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000)) is None
    assert callback.names[0] == "on_open" and callback.names[-2:] == ["on_error", "on_close"]
    assert len(callback.values("on_data")) == 2  # what arrived before the drop was delivered
    (message,) = callback.values("on_error")
    assert json.loads(message)["header"]["error_code"] == "ConnectionLost"
    assert isinstance(message.error, ConnectionLostError)  # type: ignore[attr-defined]


def test_silent_disconnect_is_found_by_pings(server: ServerHandle) -> None:
    proxy = FreezableProxy(server.server.port)
    try:
        synthesizer = synth(server, url=proxy.url(), ping_interval=0.2, ping_timeout=0.3)
        synthesizer.streaming_call("Hello there, ")
        proxy.freeze()  # nothing gets through any more, nothing is closed
        synthesizer.streaming_call("how are you?")
        started = time.monotonic()
        with pytest.raises(ConnectionLostError) as info:
            synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
        assert info.value.code == "PingTimeout"
        assert time.monotonic() - started < 2.0
    finally:
        proxy.close()


def test_stalled_server_hits_the_client_deadline(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="stall", stage="audio", after_frames=1, seconds=1.5))
    synthesizer = synth(server, timeouts=Timeouts(idle=0.3), ping_interval=None)
    started = time.monotonic()
    with pytest.raises(ClientTimeoutError, match="the rest of the audio"):
        synthesizer.call(TEXT)
    assert time.monotonic() - started < 1.2


def test_call_timeout_millis(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="stall", stage="audio", after_frames=1, seconds=1.5))
    with pytest.raises(WaitTimeoutError) as info:
        synth(server).call(TEXT, timeout_millis=200)
    assert isinstance(info.value, TimeoutError)  # what the SDK raises
    assert isinstance(info.value, ClientTimeoutError)


def test_streaming_complete_timeout_cancels_the_task(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="stall", stage="audio", after_frames=1, seconds=1.5))
    synthesizer = synth(server)
    synthesizer.streaming_call(TEXT)
    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as info:
        synthesizer.streaming_complete(complete_timeout_millis=200)
    assert time.monotonic() - started < 1.0
    assert synthesizer.get_last_error() is info.value
    run = synthesizer._run
    assert run is not None and run.done.wait(STEP)  # the connection was closed at once


def test_call_timeout_millis_with_a_callback_goes_to_on_error(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="stall", stage="audio", after_frames=1, seconds=1.5))
    callback = RecordingCallback()
    synth(server, callback=callback).call(TEXT, timeout_millis=200)
    assert callback.closed.wait(STEP)
    assert callback.names[-2:] == ["on_error", "on_close"]
    (message,) = callback.values("on_error")
    assert "timeout_millis" in json.loads(message)["header"]["error_message"]


# -- callbacks --------------------------------------------------------------------
def test_blocking_callback_does_not_stall_the_socket(server: ServerHandle) -> None:
    release = threading.Event()

    class Blocking(RecordingCallback):
        def on_data(self, data: bytes) -> None:
            super().on_data(data)
            release.wait(STEP)  # the first on_data blocks until the test says so

    callback = Blocking()
    synthesizer = synth(server, callback=callback)
    synthesizer.call(TEXT)
    assert callback.first_data.wait(STEP)
    # While on_data is blocked, the reader receives the whole task.
    run = synthesizer._run
    assert run is not None and run.done.wait(STEP)
    (task,) = server.server.tasks
    assert task.state == "finished" and run.finished
    assert len(callback.values("on_data")) == 1  # still blocked in the first one
    release.set()
    assert callback.closed.wait(STEP)
    assert len(callback.values("on_data")) == task.frames_sent  # every frame delivered
    assert len(callback.audio) == task.audio_bytes_sent
    assert callback.names[0] == "on_open" and callback.names[-2:] == ["on_complete", "on_close"]
    assert callback.threads and not any(name.startswith("cosyvoice-sync-reader") for name in callback.threads)


def test_callback_exception_is_logged_and_the_task_goes_on(
    server: ServerHandle, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing(RecordingCallback):
        def on_data(self, data: bytes) -> None:
            super().on_data(data)
            raise RuntimeError("bug in user code")

    callback = Failing()
    synthesizer = synth(server, callback=callback)
    synthesizer.streaming_call(TEXT)
    synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
    assert callback.names[-2:] == ["on_complete", "on_close"]
    assert len(callback.audio) == server.server.tasks[0].audio_bytes_sent
    assert "ResultCallback.on_data raised" in caplog.text


def test_streaming_cancel_stops_callbacks_at_once(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="stall", stage="audio", after_frames=2, seconds=1.0))
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback)
    synthesizer.streaming_call(TEXT)
    assert callback.first_data.wait(STEP)
    synthesizer.streaming_cancel()
    assert callback.closed.is_set()  # on_close delivered before streaming_cancel returned
    calls = list(callback.calls)
    assert [name for name, _ in calls[-2:]] == ["on_complete", "on_close"]  # as in the SDK
    assert "on_error" not in callback.names
    run = synthesizer._run
    assert run is not None and run.done.wait(STEP)
    assert callback.calls == calls  # nothing after cancel
    assert synthesizer.get_last_error() is None  # a cancel is not a failure
    (task,) = server.server.tasks
    assert task.state == "aborted"  # the server was told (the cancel directive), not just hung up on
    with pytest.raises(InvalidTaskError):
        synthesizer.streaming_cancel()  # twice: the SDK's InvalidTask


# -- bad parameters -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"volume": 101}, "volume"),
        ({"speech_rate": 3.0}, "speech_rate"),
        ({"pitch_rate": 0.1}, "pitch_rate"),
        ({"seed": -1}, "seed"),
        ({"language_hints": ["xx"]}, "language_hints"),
        ({"language_hints": "en"}, "language_hints"),
        ({"format": "mp3"}, "format"),
        ({"format": None}, "format"),
        ({"instruction": "x" * 200}, "instruction"),
        (
            {"additional_params": {"bit_rate": 1000}, "format": AudioFormat.OGG_OPUS_16KHZ_MONO_16KBPS},
            "bit_rate",
        ),
        ({"additional_params": {"bit_rate": 32}}, "bit_rate"),  # mp3 has no bit_rate
        ({"additional_params": {"word_timestamp_enabled": "yes"}}, "word_timestamp_enabled"),
        ({"additional_params": {"enable_aigc_tag": 1}}, "enable_aigc_tag"),
        ({"additional_params": {"aigc_propagator": "me"}}, "aigc_propagator"),  # needs enable_aigc_tag
        ({"additional_params": {"enable_ssml": "true"}}, "enable_ssml"),
        ({"additional_params": {"rate": 9}}, "speech_rate"),
        ({"additional_params": {"sample_rate": 12345}}, "sample_rate"),
        ({"additional_params": ["bit_rate"]}, "additional_params"),
        ({"url": "ws://example.com/api-ws/v1/inference"}, "url"),
        ({"url": "https://example.com/"}, "url"),
        ({"headers": {"X-Evil": "a\r\nb"}}, "headers"),
        ({"workspace": "bad workspace"}, "workspace"),
        ({"ping_interval": 0}, "ping_interval"),
        ({"callback": object()}, "callback"),
    ],
)
def test_bad_parameters_fail_at_construction(kwargs: dict[str, object], parameter: str) -> None:
    kwargs.setdefault("url", "ws://127.0.0.1:9/")
    with pytest.raises(InvalidParameterError) as info:
        SpeechSynthesizer(MODEL, VOICE, api_key=KEY, **kwargs)  # type: ignore[arg-type]
    assert info.value.parameter == parameter
    assert parameter in str(info.value)


def test_voice_of_another_model_fails_before_connecting() -> None:
    with pytest.raises(VoiceModelMismatchError, match="418"):
        SpeechSynthesizer("cosyvoice-v2", "longanyang", url="ws://127.0.0.1:9/", api_key=KEY)


def test_bad_text_fails_before_connecting(server: ServerHandle) -> None:
    synthesizer = synth(server)
    with pytest.raises(TextLimitError):
        synthesizer.call("a" * 2001)  # call() sends one message of at most 2,000 characters
    with pytest.raises(InvalidParameterError, match="invalid character"):
        synthesizer.streaming_call("bad \x00 text")
    with pytest.raises(SSMLError):
        synthesizer.streaming_call("<speak>SSML is for call() only</speak>")
    assert server.server.connections_opened == 0


def test_ssml_task_takes_one_message(server: ServerHandle) -> None:
    synthesizer = synth(server, additional_params={"enable_ssml": True})
    synthesizer.streaming_call("<speak>Hello</speak>")
    with pytest.raises(SSMLError, match="exactly one"):
        synthesizer.streaming_call("more")
    audio = synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
    assert audio and server.server.tasks[0].parameters["enable_ssml"] is True


def test_missing_key_for_a_remote_endpoint() -> None:
    with pytest.raises(AuthenticationError, match="no API key") as info:
        SpeechSynthesizer(MODEL, VOICE, url="wss://dashscope.aliyuncs.com/api-ws/v1/inference")
    assert info.value.code == "NoApiKey"


def test_streaming_call_after_a_failure_raises_it(server: ServerHandle) -> None:
    server.server.add_fault(Fault(kind="fail_task", message=ERROR_418))
    synthesizer = synth(server)
    synthesizer.streaming_call("Hello there. ")  # a whole sentence: synthesized, then failed
    run = synthesizer._run
    assert run is not None and run.done.wait(STEP)
    with pytest.raises(VoiceModelMismatchError):
        synthesizer.streaming_call("More text.")
    with pytest.raises(VoiceModelMismatchError):
        synthesizer.streaming_complete(MS)
    assert synthesizer.call("Hello.")  # the synthesizer itself is fine: a new task works


def test_request_failures_survive_pickling_and_copying() -> None:
    import copy
    import pickle

    from cosyvoice_stream import ServerError
    from cosyvoice_stream.sync import RequestFailure
    from cosyvoice_stream.sync.errors import as_request_failure

    error = as_request_failure(
        ServerError("InternalError: boom", code="InternalError", task_id="t-1"),
        name="InternalError",
        message="boom",
    )
    for clone in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert isinstance(clone, RequestFailure) and isinstance(clone, ServerError)
        assert (clone.request_id, clone.name, clone.message, clone.http_code) == (
            "t-1",
            "InternalError",
            "boom",
            44,
        )
        assert str(clone) == str(error) and clone.retryable
