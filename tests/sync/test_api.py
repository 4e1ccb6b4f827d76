"""The SDK's API surface and behaviour, on the embedded server."""

from __future__ import annotations

import inspect
import io
import json
import logging
import threading
import wave
from collections.abc import Callable
from typing import Any

import pytest

import cosyvoice_stream.sync as sdk
from cosyvoice_stream import InvalidParameterError, options
from cosyvoice_stream.server import ServerHandle
from cosyvoice_stream.sync import (
    AudioFormat,
    InvalidTaskError,
    ResultCallback,
    SpeechSynthesizer,
)

from .support import KEY, MODEL, STEP, VOICE, RecordingCallback, until

PCM = AudioFormat.PCM_16000HZ_MONO_16BIT
TEXT = "Hello there. This is a test of the synchronous API."
MS = int(STEP * 1000)

#: Every AudioFormat member the seed document names.
SEED_FORMATS = [
    *(f"WAV_{r}HZ_MONO_16BIT" for r in (8000, 16000, 22050, 24000, 44100, 48000)),
    "MP3_8000HZ_MONO_128KBPS",
    "MP3_16000HZ_MONO_128KBPS",
    *(f"MP3_{r}HZ_MONO_256KBPS" for r in (22050, 24000, 44100, 48000)),
    *(f"PCM_{r}HZ_MONO_16BIT" for r in (8000, 16000, 22050, 24000, 44100, 48000)),
    "OGG_OPUS_8KHZ_MONO_32KBPS",
    *(f"OGG_OPUS_{r}KHZ_MONO_{b}KBPS" for r in (16, 24, 48) for b in (16, 32, 64)),
]


def synth(server: ServerHandle, **kwargs: Any) -> SpeechSynthesizer:
    kwargs.setdefault("format", PCM)
    kwargs.setdefault("url", server.url)
    kwargs.setdefault("api_key", KEY)
    return SpeechSynthesizer(MODEL, VOICE, **kwargs)


@pytest.fixture
def module_settings() -> Any:
    """Restore the module attributes after the test."""
    saved = sdk.api_key, sdk.base_websocket_api_url
    yield sdk
    sdk.api_key, sdk.base_websocket_api_url = saved


# -- surface ----------------------------------------------------------------------
def test_star_import_exports_the_sdk_names() -> None:
    namespace: dict[str, Any] = {}
    exec("from cosyvoice_stream.sync import *", namespace)
    assert sorted(k for k in namespace if not k.startswith("__")) == [
        "AudioFormat",
        "ResultCallback",
        "SpeechSynthesizer",
        "SpeechSynthesizerObjectPool",
        "VoiceEnrollmentException",
        "VoiceEnrollmentService",
    ]


def test_all_has_every_name_of_the_sdks_tts_v2() -> None:
    tts_v2 = pytest.importorskip("dashscope.audio.tts_v2")
    assert sorted(sdk.__all__) == sorted(tts_v2.__all__)
    for name in sdk.__all__:
        assert getattr(sdk, name) is not None


def test_audio_format_is_the_core_enum_with_every_seed_member() -> None:
    assert AudioFormat is options.AudioFormat
    for name in SEED_FORMATS:
        member = AudioFormat[name]
        assert member.format in ("wav", "mp3", "pcm", "opus") and member.sample_rate > 0
    assert AudioFormat.DEFAULT.wire_format == "mp3" and AudioFormat.DEFAULT.wire_sample_rate == 22050


def test_audio_format_matches_the_official_sdk() -> None:
    tts_v2 = pytest.importorskip("dashscope.audio.tts_v2")
    theirs = {m.name: m.value for m in tts_v2.AudioFormat}
    ours = {m.name: m.value for m in AudioFormat}
    assert ours == theirs


def test_signatures_match_the_official_sdk() -> None:
    tts_v2 = pytest.importorskip("dashscope.audio.tts_v2")
    theirs = list(inspect.signature(tts_v2.SpeechSynthesizer.__init__).parameters)
    ours = list(inspect.signature(SpeechSynthesizer.__init__).parameters)
    assert ours[: len(theirs)] == theirs  # same names, same order: positional calls work too
    for method in ("call", "streaming_call", "streaming_complete", "streaming_cancel"):
        their_params = list(inspect.signature(getattr(tts_v2.SpeechSynthesizer, method)).parameters)
        assert list(inspect.signature(getattr(SpeechSynthesizer, method)).parameters) == their_params
    for method in ("get_last_request_id", "get_first_package_delay", "get_response", "close"):
        assert callable(getattr(SpeechSynthesizer, method))
    for method in ("on_open", "on_event", "on_data", "on_complete", "on_error", "on_close"):
        assert callable(getattr(ResultCallback, method)) and hasattr(tts_v2.ResultCallback, method)


# -- settings ---------------------------------------------------------------------
def test_module_attributes_are_read_at_construction(server: ServerHandle, module_settings: Any) -> None:
    module_settings.api_key = KEY
    module_settings.base_websocket_api_url = server.url
    synthesizer = SpeechSynthesizer(MODEL, VOICE, format=PCM)
    module_settings.api_key = "changed-later"
    module_settings.base_websocket_api_url = "ws://127.0.0.1:9/"
    assert synthesizer.url == server.url
    assert synthesizer.call("Hello.")  # the key and URL of construction time


def test_arguments_win_over_module_attributes(server: ServerHandle, module_settings: Any) -> None:
    module_settings.api_key = "not-this-one"
    module_settings.base_websocket_api_url = "ws://127.0.0.1:9/"
    assert synth(server).call("Hello.")


def test_environment_is_the_fallback(
    server: ServerHandle, module_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    module_settings.api_key = module_settings.base_websocket_api_url = None
    monkeypatch.setenv("DASHSCOPE_API_KEY", KEY)
    monkeypatch.setenv("DASHSCOPE_WEBSOCKET_BASE_URL", server.url)
    assert SpeechSynthesizer(MODEL, VOICE, format=PCM).call("Hello.")


def test_workspace_placeholder_and_headers(module_settings: Any) -> None:
    module_settings.base_websocket_api_url = (
        "wss://{workspace_id}.cn-beijing.maas.aliyuncs.com/api-ws/v1/inference"
    )
    synthesizer = SpeechSynthesizer(
        MODEL, VOICE, api_key=KEY, workspace="ws-123", headers={"X-Custom": "1", "user-agent": "mine/1"}
    )
    assert synthesizer.url == "wss://ws-123.cn-beijing.maas.aliyuncs.com/api-ws/v1/inference"
    headers = synthesizer._handshake_headers()
    assert headers["Authorization"] == f"Bearer {KEY}"
    assert headers["X-DashScope-WorkSpace"] == "ws-123"
    assert headers["X-Custom"] == "1" and headers["user-agent"] == "mine/1" and "User-Agent" not in headers


def test_the_key_is_never_shown(server: ServerHandle, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback)
    synthesizer.streaming_call(TEXT)
    synthesizer.streaming_complete(MS)
    assert "send " in caplog.text and "recv " in caplog.text  # the debug log is on
    for text in (caplog.text, repr(synthesizer), str(vars(synthesizer)), str(callback.calls)):
        assert KEY not in text


# -- behaviour --------------------------------------------------------------------
def test_call_returns_the_audio(server: ServerHandle) -> None:
    synthesizer = synth(server)
    assert synthesizer.get_first_package_delay() == -1.0
    first_id = synthesizer.get_last_request_id()  # known before the task, as in the SDK
    audio = synthesizer.call(TEXT)
    (task,) = server.server.tasks
    assert isinstance(audio, bytes) and len(audio) == task.audio_bytes_sent > 0
    assert synthesizer.get_last_request_id() == first_id == task.task_id
    assert 0 <= synthesizer.get_first_package_delay() < STEP * 1000
    response = synthesizer.get_response()
    assert response is not None and response["header"]["event"] == "task-finished"
    assert response["header"]["task_id"] == task.task_id


def test_a_synthesizer_runs_one_task_after_another(server: ServerHandle) -> None:
    synthesizer = synth(server)
    first = synthesizer.call("Hello.")
    first_id = synthesizer.get_last_request_id()
    second = synthesizer.call("Hello again.")
    assert first and second
    assert [t.task_id for t in server.server.tasks] == [first_id, synthesizer.get_last_request_id()]
    assert first_id != synthesizer.get_last_request_id()


def test_call_with_a_callback_returns_none_and_streams(server: ServerHandle) -> None:
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback)
    assert synthesizer.call(TEXT) is None
    assert callback.closed.wait(STEP)
    (task,) = server.server.tasks
    assert callback.names[0] == "on_open" and callback.names[-2:] == ["on_complete", "on_close"]
    assert set(callback.names) == {"on_open", "on_event", "on_data", "on_complete", "on_close"}
    assert len(callback.values("on_data")) == task.frames_sent
    assert len(callback.audio) == task.audio_bytes_sent
    events = [json.loads(m) for m in callback.values("on_event")]
    assert events and all(e["header"]["event"] == "result-generated" for e in events)
    assert {e["payload"]["output"]["type"] for e in events} >= {"sentence-begin", "sentence-end"}
    # callbacks run on one dispatcher thread, not the caller's and not the socket reader's
    (thread,) = callback.threads
    assert thread.startswith("cosyvoice-sync-callbacks-") and thread != threading.current_thread().name


def test_bidirectional_streaming_buffers_until_complete(server: ServerHandle) -> None:
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback)
    for fragment in ["The streaming ", "text-to-speech SDK ", "can convert ", "input text"]:
        synthesizer.streaming_call(fragment)
    assert synthesizer.streaming_complete(MS) is None
    (task,) = server.server.tasks
    assert task.texts == ["The streaming ", "text-to-speech SDK ", "can convert ", "input text"]
    assert task.sentences == ["The streaming text-to-speech SDK can convert input text"]
    assert callback.names[-2:] == ["on_complete", "on_close"]
    assert len(callback.audio) == task.audio_bytes_sent


def test_streaming_without_callback_returns_the_audio(server: ServerHandle) -> None:
    synthesizer = synth(server)
    synthesizer.streaming_call("Hello there. ")
    synthesizer.streaming_call("How are you?")
    audio = synthesizer.streaming_complete(MS)
    (task,) = server.server.tasks
    assert audio is not None and len(audio) == task.audio_bytes_sent > 0


def test_misuse_raises_invalid_task(server: ServerHandle) -> None:
    synthesizer = synth(server)
    with pytest.raises(InvalidTaskError):
        synthesizer.streaming_complete()
    synthesizer.streaming_call("Hello.")
    with pytest.raises(InvalidTaskError, match="already running"):
        synthesizer.call("Another text.")
    assert synthesizer.streaming_complete(MS)
    with pytest.raises(InvalidTaskError, match="streaming_cancel"):
        synthesizer.streaming_cancel()  # nothing runs: the SDK's InvalidTask
    synthesizer.close()  # close() never raises


def test_additional_params_are_validated_and_sent(server: ServerHandle) -> None:
    synthesizer = synth(
        server,
        format=AudioFormat.OGG_OPUS_16KHZ_MONO_16KBPS,
        callback=RecordingCallback(),
        language_hints=["en"],
        instruction="你说话的情感是happy。",
        additional_params={
            "bit_rate": 32,
            "word_timestamp_enabled": True,
            "enable_aigc_tag": True,
            "aigc_propagator": "tester",
            "aigc_propagate_id": "p-1",
            "rate": 1.5,
            "custom_flag": {"nested": 1},
        },
    )
    assert synthesizer.options.speech_rate == 1.5 and synthesizer.options.bit_rate == 32
    assert synthesizer.options.additional_params == {"custom_flag": {"nested": 1}}
    synthesizer.streaming_call("Hello.")
    synthesizer.streaming_complete(MS)
    params = server.server.tasks[0].parameters
    assert params["format"] == "opus" and params["sample_rate"] == 16000 and params["bit_rate"] == 32
    assert params["rate"] == 1.5 and params["word_timestamp_enabled"] is True
    assert params["enable_aigc_tag"] is True and params["aigc_propagator"] == "tester"
    assert params["aigc_propagate_id"] == "p-1" and params["custom_flag"] == {"nested": 1}
    assert params["language_hints"] == ["en"] and params["instruction"] == "你说话的情感是happy。"


def test_opus_bit_rate_comes_from_the_format(server: ServerHandle) -> None:
    synthesizer = synth(server, format=AudioFormat.OGG_OPUS_24KHZ_MONO_64KBPS)
    audio = synthesizer.call("Hello.")
    assert audio and audio[:4] == b"OggS"
    assert server.server.tasks[0].parameters["bit_rate"] == 64


def test_wav_chunks_form_one_file(server: ServerHandle) -> None:
    callback = RecordingCallback()
    synthesizer = synth(server, format=AudioFormat.WAV_24000HZ_MONO_16BIT, callback=callback)
    synthesizer.call(TEXT)
    assert callback.closed.wait(STEP)
    with wave.open(io.BytesIO(callback.audio)) as wav:
        assert wav.getframerate() == 24000 and wav.getnchannels() == 1 and wav.getsampwidth() == 2
        assert wav.getnframes() > 24000  # more than a second


def test_ssml_through_call(server: ServerHandle) -> None:
    audio = synth(server).call("<speak>Hello <break time='200ms'/> there.</speak>")
    assert audio and server.server.tasks[0].parameters["enable_ssml"] is True


def test_pings_do_not_disturb_a_slow_task(make_server: Callable[..., ServerHandle]) -> None:
    server = make_server(rtf=1.0)  # audio in real time: the task lasts about as long as its audio
    callback = RecordingCallback()
    synthesizer = synth(server, callback=callback, ping_interval=0.02, ping_timeout=1.0)
    synthesizer.streaming_call("Hello there.")
    synthesizer.streaming_complete(MS)
    assert callback.names[-2:] == ["on_complete", "on_close"]
    assert len(callback.audio) == server.server.tasks[0].audio_bytes_sent


def test_callback_without_the_base_class(server: ServerHandle) -> None:
    received: list[bytes] = []
    done = threading.Event()

    class Minimal:  # only what it needs, as duck typing allows in the SDK
        def on_data(self, data: bytes) -> None:
            received.append(data)

        def on_close(self) -> None:
            done.set()

    synth(server, callback=Minimal()).call("Hello.")
    assert done.wait(STEP) and b"".join(received)


def test_the_key_is_kept_out_of_the_websocket_trace(server: ServerHandle) -> None:
    import websocket

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    websocket.enableTrace(True, handler=handler)
    try:
        assert synth(server).call("Hello.")
    finally:
        websocket.enableTrace(False)
        logging.getLogger("websocket").removeHandler(handler)
    trace = stream.getvalue()
    assert "Authorization: Bearer <redacted>" in trace  # the handshake was dumped...
    assert KEY not in trace  # ...without the key


def test_zero_timeouts_mean_no_limit_and_negative_ones_are_refused(server: ServerHandle) -> None:
    synthesizer = synth(server)
    assert synthesizer.call("Hello.", timeout_millis=0)
    with pytest.raises(InvalidParameterError, match="timeout_millis=-1"):
        synthesizer.call("Hello.", timeout_millis=-1)
    assert server.server.connections_opened == 1  # refused before connecting
    synthesizer.streaming_call("Hello.")
    assert synthesizer.streaming_complete(complete_timeout_millis=0)
    with pytest.raises(InvalidParameterError, match="timeout_millis"):
        synthesizer.call("Hello.", timeout_millis="soon")  # type: ignore[arg-type]


def test_new_methods_refuse_misuse_clearly_and_leak_nothing(server: ServerHandle) -> None:
    synthesizer = synth(server, callback=RecordingCallback())
    for method in (
        synthesizer.streaming_flush,
        synthesizer.streaming_cancel,
        synthesizer.async_streaming_complete,
    ):
        with pytest.raises(InvalidTaskError, match="without a running task"):
            method()
    synthesizer.streaming_call("Hello")
    for name, call in (
        ("complete_timeout_millis", lambda: synthesizer.streaming_cancel(complete_timeout_millis=-1)),
        ("complete_timeout_millis", lambda: synthesizer.async_streaming_complete(complete_timeout_millis=-5)),
        ("complete_timeout_millis", lambda: synthesizer.streaming_complete(complete_timeout_millis=-1)),
        ("complete_timeout_millis", lambda: synthesizer.streaming_cancel(complete_timeout_millis="1s")),
    ):
        with pytest.raises(InvalidParameterError, match=name):
            call()
    synthesizer.async_streaming_complete()
    with pytest.raises(InvalidTaskError, match="async_streaming_complete"):
        synthesizer.streaming_flush()  # the task is ending: no more input
    with pytest.raises(InvalidTaskError, match="async_streaming_complete"):
        synthesizer.streaming_call("more")
    run = synthesizer._run
    assert run is not None and run.closed.wait(STEP)
    with pytest.raises(InvalidTaskError):
        synthesizer.streaming_cancel()  # over
    assert server.server.connections_opened == 1  # misuse opened nothing
    until(lambda: server.server.active_connections == 0, "the task's connection to close")


def test_streaming_cancel_from_inside_a_callback(make_server: Any) -> None:
    server = make_server(rtf=1.0)

    class CancelOnFirstAudio(RecordingCallback):
        synthesizer: SpeechSynthesizer

        def on_data(self, data: bytes) -> None:
            super().on_data(data)
            if len(self.values("on_data")) == 1:
                self.synthesizer.streaming_cancel()  # on the callback thread: must not deadlock

    callback = CancelOnFirstAudio()
    synthesizer = synth(server, callback=callback)
    callback.synthesizer = synthesizer
    synthesizer.streaming_call("A sentence long enough to need several frames of audio, and then some more.")
    assert callback.closed.wait(STEP)
    names = [name for name, _ in callback.calls]
    after = names[names.index("on_data") + 1 :]
    assert after == ["on_complete", "on_close"]  # nothing stale after the cancel


def test_a_first_streaming_call_that_could_not_start_may_be_repeated(server: ServerHandle) -> None:
    from cosyvoice_stream import AuthenticationError
    from cosyvoice_stream.server import Fault

    server.server.add_fault(Fault(kind="handshake_status", status=401))
    synthesizer = synth(server)
    with pytest.raises(AuthenticationError):
        synthesizer.streaming_call("Hello, ")  # refused: no task was started
    synthesizer.streaming_call("Hello, ")  # the SDK would raise InvalidTask here
    assert synthesizer.streaming_complete(complete_timeout_millis=int(STEP * 1000))
    with pytest.raises(InvalidTaskError, match="one streaming task"):
        synthesizer.streaming_call("Once the task is over, no more.")
    assert len(server.server.tasks) == 1
