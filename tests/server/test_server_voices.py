"""The embedded server speaks only real voices of the requested model, each with its own sound."""

from __future__ import annotations

from collections.abc import Iterator

import dashscope
import numpy as np
import pytest
from dashscope.audio.tts_v2 import AudioFormat, SpeechSynthesizer
from server_support import expect_failure, open_ws, run_task, synthesize

from cosyvoice_stream.server import EmbeddedServer, ServerConfig, ServerHandle
from cosyvoice_stream.server.engines.espeak import (
    FEMALE_VARIANTS,
    MALE_VARIANTS,
    EspeakEngine,
    voice_profile,
)
from cosyvoice_stream.server.model import Sentence, VoiceSettings
from cosyvoice_stream.server.params import MISMATCH_MESSAGE, TaskError, check_voice, parse_run_task
from cosyvoice_stream.voices import VOICES, get_voice

API_KEY = "sk-embedded-voices-test"
PCM = AudioFormat.PCM_16000HZ_MONO_16BIT


@pytest.fixture(scope="module")
def handle() -> Iterator[ServerHandle]:
    config = ServerConfig(engine="tone", api_keys=frozenset({API_KEY}), text_timeout_s=5, idle_timeout_s=10)
    with EmbeddedServer(config).start_in_thread() as running:
        yield running


@pytest.fixture(autouse=True)
def sdk_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dashscope, "api_key", API_KEY)


def _sdk_call(handle: ServerHandle, model: str, voice: str) -> bytes | None:
    synthesizer = SpeechSynthesizer(model=model, voice=voice, url=handle.url, format=PCM)
    return synthesizer.call("Hello there.", timeout_millis=10_000)


@pytest.mark.parametrize(
    ("model", "voice"),
    [
        ("cosyvoice-v3-flash", "longanyan"),  # a typo of longanyang
        ("cosyvoice-v3-flash", "longanshuo_v3"),  # the old table's invented voice
        ("cosyvoice-v3-flash", "longxiaochun_v2"),  # a v2 voice
        ("cosyvoice-v2", "longwan"),  # a v1 voice
        ("cosyvoice-v3-plus", "longanhuan_v3"),  # v3-flash only
        ("cosyvoice-v3.5-flash", "longanyang"),  # v3.5 speaks cloned voices only
        ("cosyvoice-v3-flash", "cosyvoice-v3-flash-mine-123"),  # not cloned on this server
    ],
)
def test_official_sdk_is_refused_unknown_and_foreign_voices(
    handle: ServerHandle, model: str, voice: str
) -> None:
    with pytest.raises(Exception, match="418"):
        _sdk_call(handle, model, voice)
    record = handle.server.tasks[-1]
    assert record.parameters["voice"] == voice and record.state == "failed"
    assert (record.error_code, record.error_message) == ("InvalidParameter", MISMATCH_MESSAGE)


@pytest.mark.parametrize(
    ("model", "voice"),
    [
        ("cosyvoice-v3-flash", "longanyang"),
        ("cosyvoice-v3-plus", "longanyang"),
        ("cosyvoice-v3-flash", "loongemily_v3"),
        ("cosyvoice-v2", "longxiaochun_v2"),
        ("cosyvoice-v1", "longwan"),
    ],
)
def test_official_sdk_speaks_catalogue_voices_of_the_model(
    handle: ServerHandle, model: str, voice: str
) -> None:
    audio = _sdk_call(handle, model, voice)
    assert audio and handle.server.tasks[-1].state == "finished"


def test_every_catalogue_voice_is_accepted_with_each_of_its_models() -> None:
    for voice in VOICES:
        for model in voice.models:
            params, _ = parse_run_task({"model": model, "parameters": {"voice": voice.id}, "input": {}})
            assert params.voice_languages == voice.languages
            assert params.voice_has_word_timestamps == voice.word_timestamps


def test_cloned_voices_through_the_lookup() -> None:
    cloned = {"cosyvoice-v2-abc-1": "cosyvoice-v2"}
    assert check_voice("cosyvoice-v2", "cosyvoice-v2-abc-1", cloned.get) is None
    assert check_voice("cosyvoice-v2", "longxiaochun_v2", cloned.get) is get_voice("longxiaochun_v2")
    for model, voice in (
        ("cosyvoice-v3-flash", "cosyvoice-v2-abc-1"),
        ("cosyvoice-v2", "cosyvoice-v2-xyz-9"),
    ):
        with pytest.raises(TaskError) as info:
            check_voice(model, voice, cloned.get)
        assert (info.value.code, info.value.message) == ("InvalidParameter", MISMATCH_MESSAGE)


async def test_raw_protocol_failure_names_the_service_code(espeak_server: EmbeddedServer) -> None:
    async with open_ws(espeak_server.url) as ws:
        got = await expect_failure(ws, run_task("t", voice="longanyan"))
    assert got.failed is not None
    assert got.failed["header"]["error_code"] == "InvalidParameter"
    assert got.failed["header"]["error_message"] == "[tts:]Engine return error code: 418"


# -- each voice its own sound ---------------------------------------------------


def test_profiles_follow_the_catalogue_traits_and_are_stable() -> None:
    assert voice_profile("longanyang").variant in MALE_VARIANTS  # 阳光大男孩
    assert voice_profile("longanhuan").variant in FEMALE_VARIANTS  # 欢脱元气女
    child, adult = voice_profile("longhuhu_v3"), voice_profile("longanhuan")  # 6~10岁 girl
    assert child.pitch > adult.pitch + 10
    elderly = next(v for v in VOICES if v.age == "60岁以上")
    assert voice_profile(elderly.id).pitch < 50
    assert voice_profile("longanyang") == voice_profile("longanyang")
    distinct = {voice_profile(v.id) for v in VOICES}
    assert len(distinct) > 40  # a swap between two voices is audible almost always


def test_different_voices_sound_different_and_the_same_voice_the_same() -> None:
    engine = EspeakEngine()
    sentence = Sentence.plain("Swapping voices should be audible.")

    def speak(voice: str) -> np.ndarray:
        known = get_voice(voice)
        languages = known.languages if known is not None else ()
        return engine.synthesize(sentence, VoiceSettings(voice, 16000, voice_languages=languages)).samples

    male, female, again = speak("longanyang"), speak("longanhuan"), speak("longanyang")
    assert male.tobytes() == again.tobytes()
    assert male.tobytes() != female.tobytes()
    assert _pitch_hz(female) > _pitch_hz(male) * 1.15  # a woman's voice is higher


async def test_voice_swap_is_audible_through_the_server(espeak_server: EmbeddedServer) -> None:
    async with open_ws(espeak_server.url) as ws:
        first = await synthesize(ws, "Hello there.", voice="longanyang")
    async with open_ws(espeak_server.url) as ws:
        second = await synthesize(ws, "Hello there.", voice="longanhuan")
    assert first.finished is not None and second.finished is not None
    assert first.audio and second.audio and first.audio != second.audio


def _pitch_hz(samples: np.ndarray, rate: int = 16000) -> float:
    """Median fundamental over voiced 40 ms frames, by autocorrelation (60-500 Hz)."""
    signal = samples.astype(np.float64)
    frame = int(0.04 * rate)
    estimates: list[float] = []
    for start in range(0, len(signal) - frame, frame):
        chunk = signal[start : start + frame]
        if np.sqrt(np.mean(chunk**2)) < 500:
            continue
        chunk = chunk - chunk.mean()
        corr = np.correlate(chunk, chunk, mode="full")[frame - 1 :]
        lo, hi = rate // 500, rate // 60
        lag = lo + int(np.argmax(corr[lo:hi]))
        estimates.append(rate / lag)
    assert estimates, "no voiced frame"
    return float(np.median(estimates))
