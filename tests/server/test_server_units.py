"""The server's pure parts: segmentation, SSML, parameters, the tone engine, encoders."""

from __future__ import annotations

import io
import struct

import av
import numpy as np
import pytest

from cosyvoice_stream.server.config import ServerConfig
from cosyvoice_stream.server.encoders import OggWriter, make_encoder, ogg_crc, wav_header
from cosyvoice_stream.server.engines.tone import ToneEngine, tone_tags, word_count
from cosyvoice_stream.server.model import BreakPart, Sentence, TextPart, VoiceSettings
from cosyvoice_stream.server.params import TaskError, parse_run_task
from cosyvoice_stream.server.segmenter import Segmenter, split_sentences
from cosyvoice_stream.server.session import task_tag
from cosyvoice_stream.server.ssml import SsmlError, parse_ssml, ssml_sentences
from cosyvoice_stream.text import billable_characters

# -- segmentation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Hello world. How are you?", ["Hello world.", " How are you?"]),
        ("It costs 3.14 dollars. OK", ["It costs 3.14 dollars.", " OK"]),
        ("e.g.this stays", ["e.g.this stays"]),
        ("Wait?! Yes; no", ["Wait?!", " Yes;", " no"]),
        ('He said "hi." Then left.', ['He said "hi."', " Then left."]),
        ("你好。世界！对吗？是；好", ["你好。", "世界！", "对吗？", "是；", "好"]),
        ("line one\nline two", ["line one\n", "line two"]),
        ("价格3.5元。", ["价格3.5元。"]),
    ],
)
def test_split_sentences(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences
    assert "".join(sentences) == text


def test_segmenter_streaming_ends_at_once_except_after_a_digit() -> None:
    seg = Segmenter()
    assert seg.feed("Hello world.") == ["Hello world."]  # complete: synthesized at once
    assert seg.feed(" Pi is 3.") == []  # may become 3.14
    assert seg.feed("14. Next") == [" Pi is 3.14."]
    assert seg.feed("!") == [" Next!"]
    assert seg.feed(" Done") == []
    assert seg.feed("...") == [" Done..."]
    assert seg.feed(" Version 2.") == []
    assert seg.feed(" tail") == [" Version 2."]
    assert seg.flush() == [" tail"]
    assert seg.flush() == []


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_segmenter_never_loses_text(size: int) -> None:
    def stream(text: str) -> list[str]:
        seg = Segmenter()
        pieces: list[str] = []
        for i in range(0, len(text), size):
            pieces.extend(seg.feed(text[i : i + size]))
        return pieces + seg.flush()

    text = "Alpha. Beta? It is 3.5 gamma! 你好。 delta\nepsilon; zeta"
    assert stream(text) == split_sentences(text)  # the same sentences however the text is cut
    odd = "Wait... what?! 1.5. Done"
    assert "".join(stream(odd)) == odd


# -- SSML --------------------------------------------------------------------


def test_ssml_parts_and_sentences() -> None:
    doc = '<speak>Hello <break time="500ms"/>world. I use <sub alias="World Wide Web">WWW</sub>! <say-as interpret-as="digits">12</say-as><break time="1s"/></speak>'
    sentences = ssml_sentences(doc)
    assert [s.text for s in sentences] == ["Hello world.", "I use WWW!", "12"]
    assert sentences[0].parts == (TextPart("Hello ", 0, 6), BreakPart(500), TextPart("world.", 6, 12))
    assert TextPart("World Wide Web", 6, 9) in sentences[1].parts
    assert sentences[2].parts[-1] == BreakPart(1000)
    assert sentences[-1].characters == billable_characters(doc)


def test_ssml_phoneme_and_unknown_tags() -> None:
    doc = '<speak><prosody rate="fast">Fast <emphasis>words</emphasis></prosody> <phoneme alphabet="py" ph="cao3 di4">草地</phoneme></speak>'
    (sentence,) = ssml_sentences(doc)
    assert sentence.text == "Fast words 草地"
    phoneme = [p for p in sentence.parts if isinstance(p, TextPart) and p.phonemes]
    assert phoneme == [TextPart("草地", 11, 13, "cao3 di4", "py")]


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ("<speak>unclosed <break></speak>", "not well-formed"),
        ("<speak>a<break time='2 parsecs'/></speak>", "break"),
        ("<speak>a<break time='20s'/></speak>", "10000"),
        ("<speak>a<break strength='huge'/></speak>", "strength"),
        ("<voice>x</voice>", "<speak>"),
        ('<!DOCTYPE x [<!ENTITY a "b">]><speak>&a;</speak>', "DOCTYPE"),
    ],
)
def test_ssml_errors(doc: str, match: str) -> None:
    with pytest.raises(SsmlError, match=match):
        parse_ssml(doc)


def test_ssml_only_a_break() -> None:
    (sentence,) = ssml_sentences('<speak><break time="1.5s"/></speak>')
    assert sentence.parts == (BreakPart(1500),) and sentence.speakable


# -- parameters --------------------------------------------------------------


def _payload(**parameters: object) -> dict[str, object]:
    return {"model": "cosyvoice-v3-flash", "parameters": {"voice": "longanyang", **parameters}, "input": {}}


def test_parameters_defaults_and_sdk_quirks() -> None:
    params, raw = parse_run_task(_payload(format="Default", sample_rate=0, type=0))
    assert (params.format, params.sample_rate, params.volume, params.rate) == ("mp3", 22050, 50, 1.0)
    assert raw["type"] == 0
    params, _ = parse_run_task(
        _payload(format="opus", sample_rate=16000, bit_rate=64, language_hints=["zh", "en"])
    )
    assert params.bit_rate == 64 and params.language == "zh"
    params, _ = parse_run_task(_payload(format="pcm", bit_rate=999999))  # ignored unless opus
    assert params.bit_rate == 32


def test_cloned_voices_follow_their_model() -> None:
    cloned = {"cosyvoice-v2-myvoice-abc": "cosyvoice-v2", "cosyvoice-v3-flash-x-1": "cosyvoice-v3-flash"}

    def payload(voice: str) -> dict[str, object]:
        return {"model": "cosyvoice-v2", "parameters": {"voice": voice}, "input": {}}

    params, _ = parse_run_task(payload("cosyvoice-v2-myvoice-abc"), cloned_voice_model=cloned.get)
    assert params.voice == "cosyvoice-v2-myvoice-abc"
    with pytest.raises(TaskError, match="418"):  # cloned for another model
        parse_run_task(payload("cosyvoice-v3-flash-x-1"), cloned_voice_model=cloned.get)
    with pytest.raises(TaskError, match="418"):  # by default the server knows no cloned voice
        parse_run_task(payload("cosyvoice-v2-myvoice-abc"))


# -- tone engine -------------------------------------------------------------


def test_task_tags_are_unique_and_never_zero() -> None:
    tags = [task_tag(i) for i in range(30000)]
    assert len(set(tags)) == 30000 and 0 not in tags and max(tags) <= 30000
    assert tags[:2] == [1000, 1037]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Hello, world!", ["Hello,", "world!"]),
        ("你好，世界。", ["你", "好，", "世", "界。"]),
        ("It is 3.14 - ok", ["It", "is", "3.14 -", "ok"]),
        ("“Quoted” text", ["“Quoted”", "text"]),
        ("abc中文def", ["abc", "中", "文", "def"]),
        ("!!! hi", ["!!! hi"]),
    ],
)
def test_tone_words(text: str, words: list[str]) -> None:
    result = ToneEngine().synthesize(Sentence.plain(text), VoiceSettings("v", 24000))
    assert [w.text for w in result.words] == words
    assert word_count(text) == len(words)
    for w in result.words:
        assert text[w.begin_index : w.end_index] == w.text


@pytest.mark.parametrize("rate", [8000, 22050, 44100])
@pytest.mark.parametrize("speech_rate", [0.5, 1.0, 1.7])
def test_tone_durations_and_times(rate: int, speech_rate: float) -> None:
    engine = ToneEngine(word_ms=200, gap_ms=50)
    result = engine.synthesize(Sentence.plain("a b c"), VoiceSettings("v", rate, rate=speech_rate, tag=1111))
    assert len(result.samples) == round(3 * 250 / speech_rate * rate / 1000)
    assert [round(w.begin_time, 6) for w in result.words] == [
        round(i * 250 / speech_rate, 6) for i in range(3)
    ]
    assert all(round(w.end_time - w.begin_time, 6) == round(200 / speech_rate, 6) for w in result.words)
    assert tone_tags(result.samples.tobytes()) == {1111}
    # Gap samples are silent, word samples are all +-tag.
    per_ms = rate / 1000
    for w in result.words:
        inside = result.samples[round(w.begin_time * per_ms) : round(w.end_time * per_ms)]
        assert (np.abs(inside.astype(int)) == 1111).all()
    gap = result.samples[
        round(result.words[0].end_time * per_ms) : round(result.words[1].begin_time * per_ms)
    ]
    assert not gap.any()


def test_tone_volume_pitch_seed_and_breaks() -> None:
    engine = ToneEngine()
    sentence = Sentence.plain("one two")
    base = engine.synthesize(sentence, VoiceSettings("v", 16000, tag=20000))
    loud = engine.synthesize(sentence, VoiceSettings("v", 16000, tag=20000, volume=100))
    quiet = engine.synthesize(sentence, VoiceSettings("v", 16000, tag=20000, volume=25))
    assert tone_tags(loud.samples.tobytes()) == {32767} and tone_tags(quiet.samples.tobytes()) == {10000}
    high = engine.synthesize(sentence, VoiceSettings("v", 16000, tag=20000, pitch=2.0))
    sign_changes = lambda s: int(np.count_nonzero(np.diff(np.sign(s[:3200]))))  # noqa: E731
    assert sign_changes(high.samples) > 1.8 * sign_changes(base.samples)
    same = engine.synthesize(sentence, VoiceSettings("v", 16000, tag=20000, seed=5))
    again = engine.synthesize(sentence, VoiceSettings("v", 16000, tag=20000, seed=5))
    other = engine.synthesize(sentence, VoiceSettings("v", 16000, tag=20000, seed=6))
    assert same.samples.tobytes() == again.samples.tobytes() != other.samples.tobytes()
    (with_break,) = ssml_sentences('<speak>one <break time="300ms"/>two</speak>')
    result = engine.synthesize(with_break, VoiceSettings("v", 16000))
    assert len(result.samples) == 16000 * (500 + 300) // 1000
    assert [w.begin_time for w in result.words] == [0, 550]


def test_tone_sub_alias_speaks_the_alias() -> None:
    (sentence,) = ssml_sentences('<speak>See <sub alias="World Wide Web">WWW</sub>.</speak>')
    result = ToneEngine().synthesize(sentence, VoiceSettings("v", 16000))
    assert [w.text for w in result.words] == ["See", "World", "Wide", "Web."]
    assert [(w.begin_index, w.end_index) for w in result.words[1:]] == [(4, 7), (4, 7), (4, 8)]


# -- encoders ----------------------------------------------------------------


def test_wav_header() -> None:
    header = wav_header(16000)
    assert len(header) == 44 and header[:4] == b"RIFF" and header[8:16] == b"WAVEfmt "
    channels, rate, byte_rate = struct.unpack("<HII", header[22:32])
    assert (channels, rate, byte_rate) == (1, 16000, 32000)
    assert struct.unpack("<I", header[40:44])[0] >= 0xFFFF0000  # streaming: unknown length


def _ogg_pages(data: bytes) -> list[bytes]:
    pages, pos = [], 0
    while (start := data.find(b"OggS", pos)) >= 0:
        count = data[start + 26]
        end = start + 27 + count + sum(data[start + 27 : start + 27 + count])
        pages.append(data[start:end])
        pos = end
    return pages


def _crc_ok(page: bytes) -> bool:
    blank = bytearray(page)
    blank[22:26] = b"\0\0\0\0"
    return struct.unpack("<I", page[22:26])[0] == ogg_crc(bytes(blank))


def test_ogg_crc_matches_ffmpeg() -> None:
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.layout = "mono"  # type: ignore[union-attr]
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 9600), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        for packet in [*stream.encode(frame), *stream.encode(None)]:  # type: ignore[union-attr]
            container.mux(packet)
    pages = _ogg_pages(buf.getvalue())
    assert len(pages) >= 3 and all(_crc_ok(p) for p in pages)


def test_our_ogg_pages_are_valid() -> None:
    encoder = make_encoder("opus", 24000, serial=5)
    data = encoder.encode(np.zeros(4800, np.int16), last=True)
    pages = _ogg_pages(data)
    assert pages[0][28:36] == b"OpusHead" and pages[1][28:36] == b"OpusTags"
    assert all(_crc_ok(p) for p in pages)
    assert [struct.unpack("<I", p[18:22])[0] for p in pages] == list(range(len(pages)))


def test_ogg_pages_split_above_255_segments() -> None:
    writer = OggWriter(serial=3)
    data = writer.page([b"x" * 1000] * 80, granule=960 * 80)
    assert data.count(b"OggS") >= 2 and writer.sequence >= 2


def _decode(data: bytes) -> tuple[int, int]:
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(audio=0))
    return sum(f.samples for f in frames), frames[0].sample_rate


@pytest.mark.parametrize(
    ("fmt", "rate"), [("mp3", 22050), ("mp3", 8000), ("mp3", 48000), ("opus", 16000), ("opus", 48000)]
)
def test_compressed_streams_decode(fmt: str, rate: int) -> None:
    encoder = make_encoder(fmt, rate, bit_rate_kbps=32, serial=9)
    sentence = (np.sin(np.arange(rate) * 0.07) * 9000).astype(np.int16)  # 1 s
    step = rate // 10
    data = b""
    for _ in range(2):  # two sentences
        for offset in range(0, len(sentence), step):
            data += encoder.encode(sentence[offset : offset + step], last=offset + step >= len(sentence))
    decoded, decoded_rate = _decode(data)
    # Each sentence restarts the codec: its delay and padding add up to ~150 ms (mp3 at 8 kHz).
    assert 1.95 < decoded / decoded_rate < 2.4


def test_server_config_validation() -> None:
    with pytest.raises(ValueError, match="engine"):
        ServerConfig(engine="sam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rtf"):
        ServerConfig(rtf=-1)
    with pytest.raises(ValueError, match="word_timestamps_in"):
        ServerConfig(word_timestamps_in="nowhere")  # type: ignore[arg-type]
    assert ServerConfig(api_keys="k").api_keys == frozenset({"k"})  # type: ignore[arg-type]
