"""The official SDK (dashscope) against the embedded server: the compatibility check."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import dashscope
import numpy as np
import pytest
from dashscope.audio.tts_v2 import AudioFormat, ResultCallback, SpeechSynthesizer

from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig, ServerHandle

API_KEY = "sk-embedded-test"


@pytest.fixture(scope="module")
def handle() -> Iterator[ServerHandle]:
    config = ServerConfig(engine="espeak", api_keys=frozenset({API_KEY}), text_timeout_s=5, idle_timeout_s=10)
    with EmbeddedServer(config).start_in_thread() as running:
        yield running


@pytest.fixture(autouse=True)
def sdk_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashscope, "api_key", API_KEY)


class Collector(ResultCallback):
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.audio = bytearray()
        self.errors: list[str] = []
        self.completed = threading.Event()
        self.closed = threading.Event()

    def on_event(self, message: str) -> None:
        self.events.append(json.loads(message))

    def on_data(self, data: bytes) -> None:
        self.audio += data

    def on_complete(self) -> None:
        self.completed.set()

    def on_error(self, message: Any) -> None:
        self.errors.append(str(message))
        self.completed.set()

    def on_close(self) -> None:
        self.closed.set()


def decode_seconds(data: bytes) -> float:
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames) / frames[0].sample_rate


def test_call_returns_mp3_by_default(handle: ServerHandle) -> None:
    synthesizer = SpeechSynthesizer(model="cosyvoice-v3-flash", voice="longanyang", url=handle.url)
    audio = synthesizer.call("What is the weather like today?", timeout_millis=10_000)
    assert audio and 6 * 0.2 <= decode_seconds(audio) <= 6 * 1.0
    record = next(t for t in handle.server.tasks if t.task_id == synthesizer.get_last_request_id())
    assert record.state == "finished" and record.parameters["enable_ssml"] is True
    assert record.parameters["format"] == "Default"  # the SDK's AudioFormat.DEFAULT on the wire
    assert synthesizer.get_first_package_delay() > 0


def test_call_with_ssml(handle: ServerHandle) -> None:
    synthesizer = SpeechSynthesizer(
        model="cosyvoice-v3-flash",
        voice="longanyang",
        url=handle.url,
        format=AudioFormat.PCM_16000HZ_MONO_16BIT,
    )
    audio = synthesizer.call('<speak>Wait <break time="1s"/>for it.</speak>', timeout_millis=10_000)
    assert len(audio) / 2 / 16000 > 1.0


def test_unidirectional_streaming_with_callback(handle: ServerHandle) -> None:
    callback = Collector()
    synthesizer = SpeechSynthesizer(
        model="cosyvoice-v3-flash",
        voice="longanyang",
        url=handle.url,
        format=AudioFormat.PCM_22050HZ_MONO_16BIT,
        callback=callback,
    )
    assert synthesizer.call("Streaming through a callback. Two sentences.") is None
    assert callback.completed.wait(10) and not callback.errors
    pcm = np.frombuffer(bytes(callback.audio), dtype=np.int16)
    assert 6 * 0.2 <= len(pcm) / 22050 <= 6 * 1.0 and np.abs(pcm).max() > 1000
    assert callback.events and all(e["header"]["event"] == "result-generated" for e in callback.events)


def test_bidirectional_streaming_with_word_timestamps(handle: ServerHandle) -> None:
    callback = Collector()
    synthesizer = SpeechSynthesizer(
        model="cosyvoice-v3-flash",
        voice="longyingjing_v3",
        url=handle.url,
        format=AudioFormat.PCM_24000HZ_MONO_16BIT,
        callback=callback,
        additional_params={"word_timestamp_enabled": True},
    )
    for piece in ["The streaming text-to-speech SDK ", "can convert input text ", "into speech. ", "Done"]:
        synthesizer.streaming_call(piece)
    synthesizer.streaming_complete(complete_timeout_millis=10_000)
    assert callback.completed.is_set() and not callback.errors
    words = []
    for event in callback.events:  # the SDK sample's way of reading them
        sentence = event["payload"]["output"]["sentence"]
        words.extend(sentence["words"])
    assert [w["text"] for w in words][:3] == ["The", "streaming", "text-to-speech"]
    assert [w["text"] for w in words][-1] == "Done"
    times = [w["begin_time"] for w in words]
    assert times == sorted(times)
    audio_ms = len(callback.audio) / 2 / 24
    assert words[-1]["end_time"] <= audio_ms + 1
    record = next(t for t in handle.server.tasks if t.task_id == synthesizer.get_last_request_id())
    assert record.texts[0] == "The streaming text-to-speech SDK " and record.state == "finished"


def test_voice_of_another_generation_raises(handle: ServerHandle) -> None:
    synthesizer = SpeechSynthesizer(model="cosyvoice-v3-flash", voice="longxiaochun_v2", url=handle.url)
    with pytest.raises(Exception, match="418"):
        synthesizer.call("This voice belongs to cosyvoice-v2.", timeout_millis=10_000)


def test_mid_stream_failure_reaches_on_error(handle: ServerHandle) -> None:
    handle.server.add_fault(
        Fault(kind="fail_task", code="InternalError", message="engine exploded", after_frames=1)
    )
    callback = Collector()
    synthesizer = SpeechSynthesizer(
        model="cosyvoice-v3-flash",
        voice="longanyang",
        url=handle.url,
        format=AudioFormat.PCM_16000HZ_MONO_16BIT,
        callback=callback,
    )
    synthesizer.streaming_call("A sentence long enough to need several frames of audio.")
    synthesizer.streaming_complete(complete_timeout_millis=10_000)
    assert callback.errors and "engine exploded" in callback.errors[0]


def test_sdk_reads_the_environment_url(handle: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashscope, "base_websocket_api_url", handle.url)
    synthesizer = SpeechSynthesizer(
        model="cosyvoice-v3-flash", voice="longanyang", format=AudioFormat.WAV_16000HZ_MONO_16BIT
    )
    audio = synthesizer.call("Module setting.", timeout_millis=10_000)
    assert audio[:4] == b"RIFF" and len(audio) > 44 + 16000


def test_sdk_configured_by_environment_variables(handle: ServerHandle, tmp_path: Path) -> None:
    """A fresh interpreter: DASHSCOPE_WEBSOCKET_BASE_URL and DASHSCOPE_API_KEY, nothing in code."""
    script = tmp_path / "sdk_env.py"
    script.write_text(
        "from dashscope.audio.tts_v2 import AudioFormat, SpeechSynthesizer\n"
        "s = SpeechSynthesizer(model='cosyvoice-v3-flash', voice='longanyang',"
        " format=AudioFormat.PCM_16000HZ_MONO_16BIT)\n"
        "audio = s.call('Configured from the environment.', timeout_millis=10000)\n"
        "print(len(audio))\n"
    )
    env = {**os.environ, "DASHSCOPE_WEBSOCKET_BASE_URL": handle.url, "DASHSCOPE_API_KEY": API_KEY}
    done = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 16000 * 2 * 0.5
