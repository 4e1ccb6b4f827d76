"""The espeak engine: real speech, plausible durations, real word times."""

from __future__ import annotations

import asyncio
import io
import struct
import time

import av
import numpy as np
import pytest
from server_support import open_ws, samples, synthesize

from cosyvoice_stream.server import EmbeddedServer
from cosyvoice_stream.server.engines.espeak import EspeakEngine, espeak_voice_for
from cosyvoice_stream.server.model import Sentence, VoiceSettings
from cosyvoice_stream.server.ssml import ssml_sentences

ENGLISH = "The quick brown fox jumps over the lazy dog."
CHINESE = "今天天气很好，我们一起去公园散步吧。"


@pytest.fixture(scope="module")
def engine() -> EspeakEngine:
    return EspeakEngine()


def rms(pcm: np.ndarray) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0


def test_english_is_speech(engine: EspeakEngine) -> None:
    result = engine.synthesize(Sentence.plain(ENGLISH), VoiceSettings("longanyang", 24000))
    seconds = len(result.samples) / 24000
    assert 9 * 0.2 <= seconds <= 9 * 1.0  # 9 words
    assert rms(result.samples) > 500
    assert [w.text for w in result.words] == ENGLISH.split()
    begins = [w.begin_time for w in result.words]
    assert begins == sorted(begins) and len(set(begins)) == len(begins)
    assert all(0 <= w.begin_time <= w.end_time <= result.duration_ms + 1 for w in result.words)
    assert all(ENGLISH[w.begin_index : w.end_index] == w.text for w in result.words)


def test_chinese_is_speech(engine: EspeakEngine) -> None:
    chosen = espeak_voice_for(VoiceSettings("longanyang", 16000, voice_languages=("zh", "en")), CHINESE)
    assert chosen.startswith("cmn+m")  # longanyang is a young man (阳光大男孩)
    result = engine.synthesize(
        Sentence.plain(CHINESE), VoiceSettings("longanyang", 16000, voice_languages=("zh", "en"))
    )
    seconds = len(result.samples) / 16000
    assert 16 * 0.1 <= seconds <= 16 * 0.8  # 16 ideographs
    assert rms(result.samples) > 500
    assert len(result.words) >= 5
    begins = [w.begin_time for w in result.words]
    assert begins == sorted(begins) and result.words[-1].end_time <= result.duration_ms + 1
    assert all(CHINESE[w.begin_index : w.end_index] == w.text for w in result.words)


def test_language_choice() -> None:
    def language(settings: VoiceSettings, text: str) -> str:
        return espeak_voice_for(settings, text).split("+")[0]

    zh_voice = VoiceSettings("longanyang", 16000, voice_languages=("zh", "en"))
    assert language(zh_voice, "Plain English") == "en-us"
    assert language(VoiceSettings("x", 16000, language="fr"), "Bonjour") == "fr"
    assert language(VoiceSettings("x", 16000, language="zh"), "abc") == "cmn"
    assert language(VoiceSettings("x", 16000, voice_languages=("ru",)), "Привет") == "ru"


def test_deterministic_and_parameters(engine: EspeakEngine) -> None:
    sentence = Sentence.plain("Determinism matters here.")
    first = engine.synthesize(sentence, VoiceSettings("v", 22050, seed=3))
    engine.synthesize(Sentence.plain("Something else in between."), VoiceSettings("v", 22050))
    again = engine.synthesize(sentence, VoiceSettings("v", 22050, seed=3))
    assert first.samples.tobytes() == again.samples.tobytes()
    fast = engine.synthesize(sentence, VoiceSettings("v", 22050, rate=2.0, seed=3))
    assert len(fast.samples) < 0.75 * len(first.samples)
    quiet = engine.synthesize(sentence, VoiceSettings("v", 22050, volume=25, seed=3))
    assert 0.4 < rms(quiet.samples) / rms(first.samples) < 0.6
    silent = engine.synthesize(sentence, VoiceSettings("v", 22050, volume=0, seed=3))
    assert not silent.samples.any()
    resampled = engine.synthesize(sentence, VoiceSettings("v", 48000, seed=3))
    assert abs(len(resampled.samples) / 48000 - len(first.samples) / 22050) < 0.01


def test_ssml_break_and_phonemes(engine: EspeakEngine) -> None:
    (plain,) = ssml_sentences("<speak>Hello there</speak>")
    (pause,) = ssml_sentences('<speak>Hello <break time="1s"/>there</speak>')
    a = engine.synthesize(plain, VoiceSettings("v", 16000))
    b = engine.synthesize(pause, VoiceSettings("v", 16000))
    assert len(b.samples) - len(a.samples) > 0.8 * 16000
    assert [w.text for w in b.words] == ["Hello", "there"]
    assert b.words[1].begin_time >= 1000
    (ph,) = ssml_sentences('<speak><phoneme alphabet="x-espeak" ph="h@l\'oU">hi</phoneme></speak>')
    result = engine.synthesize(ph, VoiceSettings("v", 16000))
    assert rms(result.samples) > 300


async def test_espeak_over_the_wire_with_words(espeak_server: EmbeddedServer) -> None:
    async with open_ws(espeak_server.url) as ws:
        started = time.monotonic()
        got = await synthesize(
            ws, ["Hello there. ", "How are you doing today?"], word_timestamp_enabled=True, sample_rate=16000
        )
        elapsed = time.monotonic() - started
    pcm = samples(got.audio)
    assert rms(pcm) > 500 and 7 * 0.2 <= len(pcm) / 16000 <= 7 * 1.0
    ends = got.results("sentence-end")
    words = [w for e in ends for w in e["payload"]["output"]["sentence"]["words"]]
    assert [w["text"] for w in words] == ["Hello", "there.", "How", "are", "you", "doing", "today?"]
    times = [w["begin_time"] for w in words]
    assert times == sorted(times) and words[-1]["end_time"] <= len(pcm) / 16 + 1  # task-relative ms
    assert elapsed < 5


@pytest.mark.parametrize(("fmt", "rate"), [("wav", 16000), ("mp3", 22050), ("opus", 24000)])
async def test_encoded_formats_over_the_wire(espeak_server: EmbeddedServer, fmt: str, rate: int) -> None:
    async with open_ws(espeak_server.url) as ws:
        got = await synthesize(ws, "Encoded speech. Second sentence.", format=fmt, sample_rate=rate)
    data = got.audio
    if fmt == "wav":
        first = got.frames[0]
        assert first[:4] == b"RIFF" and struct.unpack("<I", first[24:28])[0] == rate
        assert all(not f.startswith(b"RIFF") for f in got.frames[1:])
    if fmt == "opus":
        assert got.frames[0].startswith(b"OggS") and b"OpusHead" in got.frames[0]
        assert sum(f.count(b"OpusHead") for f in got.frames) == 1
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    decoded = np.concatenate([f.to_ndarray().reshape(-1) for f in frames])
    seconds = len(decoded) / frames[0].sample_rate
    assert 4 * 0.2 <= seconds <= 4 * 1.0
    assert float(np.abs(decoded).max()) > 0.01 * (32768 if decoded.dtype == np.int16 else 1)


async def test_espeak_never_blocks_the_loop(espeak_server: EmbeddedServer) -> None:
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    tick = asyncio.create_task(ticker())
    try:
        async with open_ws(espeak_server.url) as ws:
            long_text = " ".join(f"Sentence number {i} is spoken now." for i in range(30))
            got = await synthesize(ws, long_text, timeout=20)
    finally:
        tick.cancel()
    assert got.finished is not None
    gaps = np.diff(ticks)
    assert gaps.max() < 0.25
