"""Bad input, table-driven, across every surface: the core, the SDK-style sync API, both
adapters and the CLI. Each is refused with an error that names the parameter or the
problem, at the earliest point: construction, or the call/push that carries the text,
before any network (the embedded server counts the connections it accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from reliability_support import drive

from cosyvoice_stream import (
    AsyncSynthesizer,
    AuthenticationError,
    InstructionError,
    InvalidParameterError,
    SSMLError,
    SynthesisOptions,
    TextLimitError,
    Timeouts,
    VoiceModelMismatchError,
    cli,
)
from cosyvoice_stream.server import EmbeddedServer, ServerConfig

V2 = {"model": "cosyvoice-v2", "voice": "longxiaochun_v2"}
REMOTE_WS = "ws://dashscope.aliyuncs.com/api-ws/v1/inference"
SURROGATE = "lone \ud800 surrogate"
CONTROL = "bell \x07 character"
BROKEN_SSML = "<speak><p>never closed</speak>"


@dataclass(frozen=True)
class Bad:
    """One bad input: how to make it, what must be raised, what the message must name."""

    id: str
    make: Callable[..., Any]
    error: type[BaseException] | int  # an exception class, or the CLI's exit status
    names: tuple[str, ...]


def case(bad: Bad, xfail: str | None = None) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
    return pytest.param(bad, id=bad.id, marks=marks)


def assert_names(message: str, names: tuple[str, ...]) -> None:
    for name in names:
        assert name in message, f"{name!r} is not named in: {message}"


# -- core: construction (AsyncSynthesizer, SynthesisOptions, update_options) ------------------


def synth(url: str, **kwargs: Any) -> AsyncSynthesizer:
    return AsyncSynthesizer(url=url, **kwargs)


def update(url: str, **changes: Any) -> None:
    AsyncSynthesizer(url=url).update_options(**changes)


# fmt: off
CORE_CONSTRUCTION = [
    case(Bad("volume-above-100", lambda u: synth(u, volume=101), InvalidParameterError, ("volume", "101"))),
    case(Bad("volume-negative", lambda u: synth(u, volume=-1), InvalidParameterError, ("volume", "-1"))),
    case(Bad("volume-str", lambda u: synth(u, volume="50"), InvalidParameterError, ("volume", "'50'"))),
    case(Bad("volume-float", lambda u: synth(u, volume=50.5), InvalidParameterError, ("volume", "50.5"))),
    case(Bad("speech-rate-low", lambda u: synth(u, speech_rate=0.4), InvalidParameterError, ("speech_rate", "0.4"))),
    case(Bad("speech-rate-nan", lambda u: synth(u, speech_rate=float("nan")), InvalidParameterError, ("speech_rate", "nan"))),
    case(Bad("pitch-rate-high", lambda u: synth(u, pitch_rate=2.5), InvalidParameterError, ("pitch_rate", "2.5"))),
    case(Bad("pitch-rate-bool", lambda u: synth(u, pitch_rate=True), InvalidParameterError, ("pitch_rate", "True"))),
    case(Bad("seed-above", lambda u: synth(u, seed=65536), InvalidParameterError, ("seed", "65536"))),
    case(Bad("seed-negative", lambda u: synth(u, seed=-1), InvalidParameterError, ("seed", "-1"))),
    case(Bad("format-unknown", lambda u: synth(u, format="flac"), InvalidParameterError, ("format", "flac"))),
    case(Bad("sample-rate-zero", lambda u: synth(u, sample_rate=0), InvalidParameterError, ("sample_rate", "0"))),
    case(Bad("sample-rate-str", lambda u: synth(u, sample_rate="24000"), InvalidParameterError, ("sample_rate", "'24000'"))),
    case(Bad("wav-unsupported-rate", lambda u: synth(u, format="wav", sample_rate=32000), InvalidParameterError, ("sample_rate", "32000"))),
    case(Bad("opus-22050", lambda u: synth(u, format="opus", sample_rate=22050), InvalidParameterError, ("sample_rate", "22050"))),
    case(Bad("opus-44100-options", lambda u: SynthesisOptions(format="opus", sample_rate=44100), InvalidParameterError, ("sample_rate", "44100"))),
    case(Bad("bit-rate-low", lambda u: synth(u, format="opus", sample_rate=16000, bit_rate=5), InvalidParameterError, ("bit_rate", "5"))),
    case(Bad("bit-rate-without-opus", lambda u: synth(u, bit_rate=64), InvalidParameterError, ("bit_rate", "opus"))),
    case(Bad("language-unknown", lambda u: synth(u, language_hints=["xx"]), InvalidParameterError, ("language_hints", "xx"))),
    case(Bad("language-str", lambda u: SynthesisOptions(language_hints="en"), InvalidParameterError, ("language_hints", "'en'"))),
    case(Bad("language-two", lambda u: synth(u, language_hints=["en", "zh"]), InvalidParameterError, ("language_hints", "exactly one"))),
    case(Bad("instruction-on-v2", lambda u: synth(u, instruction="Speak happily.", **V2), InstructionError, ("instruction", "cosyvoice-v2"))),
    case(Bad("instruction-too-long", lambda u: synth(u, instruction="x" * 129), InvalidParameterError, ("instruction", "128"))),
    case(Bad("voice-of-v2-on-v3", lambda u: synth(u, voice="longxiaochun_v2"), VoiceModelMismatchError, ("longxiaochun_v2", "cosyvoice-v3-flash", "418"))),
    case(Bad("voice-of-v3-on-v2", lambda u: synth(u, model="cosyvoice-v2", voice="longanyang"), VoiceModelMismatchError, ("longanyang", "cosyvoice-v2"))),
    case(Bad("model-empty", lambda u: synth(u, model=""), InvalidParameterError, ("model",))),
    case(Bad("voice-newline", lambda u: synth(u, voice="long\nanyang"), InvalidParameterError, ("voice",))),
    case(Bad("timestamps-str", lambda u: synth(u, word_timestamp_enabled="yes"), InvalidParameterError, ("word_timestamp_enabled", "yes"))),
    case(Bad("aigc-propagator-without-tag", lambda u: synth(u, aigc_propagator="me"), InvalidParameterError, ("aigc_propagator", "enable_aigc_tag"))),
    case(Bad("additional-params-keys", lambda u: synth(u, additional_params={1: "x"}), InvalidParameterError, ("additional_params",))),
    case(Bad("additional-volume", lambda u: synth(u, additional_params={"volume": 500}), InvalidParameterError, ("volume", "500"))),
    case(Bad("additional-voice-mismatch", lambda u: synth(u, additional_params={"voice": "longxiaochun_v2"}), VoiceModelMismatchError, ("longxiaochun_v2",))),
    case(Bad("api-key-crlf", lambda u: synth(u, api_key="sk-abc\r\nX-Injected: 1"), InvalidParameterError, ("api_key", "CR/LF"))),
    case(Bad("api-key-nul", lambda u: synth(u, api_key="sk-abc\x00"), InvalidParameterError, ("api_key",))),
    case(Bad("api-key-and-provider", lambda u: synth(u, api_key="sk-a", token_provider=lambda: "st-b"), InvalidParameterError, ("api_key", "token_provider"))),
    case(Bad("api-key-missing", lambda u: AsyncSynthesizer(), AuthenticationError, ("DASHSCOPE_API_KEY",))),
    case(Bad("url-remote-plain-ws", lambda u: AsyncSynthesizer(url=REMOTE_WS, api_key="sk-a"), InvalidParameterError, ("url", "ws://", "wss://"))),
    case(Bad("url-http", lambda u: synth(u.replace("ws://", "http://")), InvalidParameterError, ("url", "http://"))),
    case(Bad("url-credentials", lambda u: AsyncSynthesizer(url="wss://user:pw@example.com/x", api_key="sk-a"), InvalidParameterError, ("url", "credentials"))),
    case(Bad("region-unknown", lambda u: AsyncSynthesizer(region="mars-north-1", api_key="sk-a"), InvalidParameterError, ("region", "mars-north-1"))),
    case(Bad("timeouts-zero", lambda u: synth(u, timeouts=Timeouts(connect=0)), InvalidParameterError, ("timeouts.connect", "0"))),
    case(Bad("timeouts-dict", lambda u: synth(u, timeouts={"connect": 1.0}), InvalidParameterError, ("timeouts",))),
    case(Bad("keep-warm-str", lambda u: synth(u, keep_warm="1"), InvalidParameterError, ("keep_warm",))),
    case(Bad("max-idle-negative", lambda u: synth(u, max_idle_connections=-1), InvalidParameterError, ("max_idle_connections",))),
    case(Bad("update-options-volume", lambda u: update(u, volume=101), InvalidParameterError, ("volume", "101"))),
    case(Bad("update-options-voice", lambda u: update(u, voice="longxiaochun_v2"), VoiceModelMismatchError, ("voice",))),
]
# fmt: on


@pytest.mark.parametrize("bad", CORE_CONSTRUCTION)
async def test_core_construction_refuses(server: EmbeddedServer, bad: Bad) -> None:
    assert isinstance(bad.error, type)
    with pytest.raises(bad.error) as info:
        bad.make(server.url)
    assert_names(str(info.value), bad.names)
    assert server.connections_opened == 0


# -- core: text (synthesize() checks before connecting; push_text before sending) -------------


async def whole(synthesizer: AsyncSynthesizer, text: object, **overrides: Any) -> None:
    out = await drive(synthesizer.synthesize(text, **overrides), 5)  # type: ignore[arg-type]
    if out.error is not None:
        raise out.error
    raise AssertionError(f"accepted: {len(out.audio)} audio bytes")


async def push(synthesizer: AsyncSynthesizer, *texts: object) -> None:
    stream = synthesizer.stream()
    try:
        for text in texts:
            stream.push_text(text)  # type: ignore[arg-type]  # raises here, synchronously
    finally:
        await stream.aclose()


# fmt: off
WHOLE_TEXT = [
    case(Bad("synthesize-empty", lambda s: whole(s, ""), InvalidParameterError, ("empty",))),
    case(Bad("synthesize-whitespace", lambda s: whole(s, " \n\t "), InvalidParameterError, ("whitespace",))),
    case(Bad("synthesize-not-str", lambda s: whole(s, 123), InvalidParameterError, ("text", "int"))),
    case(Bad("synthesize-surrogate", lambda s: whole(s, SURROGATE), InvalidParameterError, ("invalid character", "\\ud800"))),
    case(Bad("synthesize-control", lambda s: whole(s, CONTROL), InvalidParameterError, ("invalid character", "\\x07"))),
    case(Bad("synthesize-ssml-over-2000", lambda s: whole(s, "<speak>" + "a" * 2001 + "</speak>"), TextLimitError, ("2001", "2000"))),
    case(Bad("synthesize-ssml-cjk-over-2000", lambda s: whole(s, "<speak>" + "中" * 1001 + "</speak>"), TextLimitError, ("2002", "2000"))),
    case(Bad("synthesize-broken-ssml", lambda s: whole(s, BROKEN_SSML), SSMLError, ("SSML", "well-formed"))),
    case(Bad("synthesize-ssml-not-speak", lambda s: whole(s, "<speak>unclosed"), SSMLError, ("SSML",))),
    case(Bad("synthesize-over-task-limit", lambda s: whole(s, "a" * 200_001), TextLimitError, ("200001", "200000"))),
    case(Bad("synthesize-override-volume", lambda s: whole(s, "Hi.", volume=500), InvalidParameterError, ("volume", "500"))),
    case(Bad("synthesize-override-rate", lambda s: whole(s, "Hi.", sample_rate=-5), InvalidParameterError, ("sample_rate", "-5"))),
]
# fmt: on

# fmt: off
PUSHED_TEXT = [
    case(Bad("push-ssml", lambda s: push(s, "<speak>Hello</speak>"), SSMLError, ("SSML", "streaming"))),
    case(Bad("push-surrogate", lambda s: push(s, SURROGATE), InvalidParameterError, ("invalid character",))),
    case(Bad("push-control", lambda s: push(s, "ok", CONTROL), InvalidParameterError, ("invalid character", "\\x07"))),
    case(Bad("push-nul", lambda s: push(s, "nul \x00 byte"), InvalidParameterError, ("invalid character", "\\x00"))),
    case(Bad("push-bytes", lambda s: push(s, b"bytes"), InvalidParameterError, ("text", "bytes"))),
    case(Bad("push-none", lambda s: push(s, None), InvalidParameterError, ("text", "NoneType"))),
    case(Bad("push-over-task-limit", lambda s: push(s, "a" * 200_001), TextLimitError, ("200001", "200000"))),
    case(Bad("push-cjk-over-task-limit", lambda s: push(s, "中" * 100_001), TextLimitError, ("200002", "200000"))),
    case(Bad("push-total-over-task-limit", lambda s: push(s, "a" * 150_000, "b" * 50_001), TextLimitError, ("200001",))),
]
# fmt: on


@pytest.mark.parametrize("bad", WHOLE_TEXT)
async def test_core_whole_text_refused_before_connecting(server: EmbeddedServer, bad: Bad) -> None:
    assert isinstance(bad.error, type)
    async with AsyncSynthesizer(url=server.url) as synthesizer:
        with pytest.raises(bad.error) as info:
            await asyncio.wait_for(bad.make(synthesizer), 5)
        assert_names(str(info.value), bad.names)
        assert server.connections_opened == 0 and synthesizer.pool_stats.opened == 0


@pytest.mark.parametrize("bad", PUSHED_TEXT)
async def test_core_pushed_text_refused_at_the_push(server: EmbeddedServer, bad: Bad) -> None:
    """A stream connects when it is created (the round trip overlaps the first token); bad
    text is refused synchronously by push_text and never reaches the service."""
    assert isinstance(bad.error, type)
    async with AsyncSynthesizer(url=server.url) as synthesizer:
        with pytest.raises(bad.error) as info:
            await asyncio.wait_for(bad.make(synthesizer), 5)
        assert_names(str(info.value), bad.names)
    assert all(not record.texts for record in server.tasks)


async def test_push_after_a_refused_push_still_works(server: EmbeddedServer) -> None:
    async with AsyncSynthesizer(url=server.url) as synthesizer:
        stream = synthesizer.stream()
        with pytest.raises(InvalidParameterError):
            stream.push_text(CONTROL)
        stream.push_text("Good text.")
        await stream.finish()
        out = await drive(stream, 5)
    assert out.error is None and out.audio and out.completes == 1
    assert [t.texts for t in server.tasks if t.texts] == [["Good text."]]


# -- the synchronous SDK-style API ----------------------------------------------------------


@pytest.fixture(scope="module")
def thread_server():
    """A server on its own thread: the sync API blocks the calling thread."""
    with EmbeddedServer(ServerConfig(engine="tone")).start_in_thread() as handle:
        yield handle.server


def speech(url: str, **kwargs: Any) -> Any:
    from cosyvoice_stream.sync import AudioFormat, SpeechSynthesizer

    kwargs.setdefault("format", AudioFormat.PCM_24000HZ_MONO_16BIT)
    model = kwargs.pop("model", "cosyvoice-v3-flash")
    voice = kwargs.pop("voice", "longanyang")
    return SpeechSynthesizer(model, voice, url=url, **kwargs)


# fmt: off
SYNC = [
    case(Bad("sync-format-str", lambda u: speech(u, format="pcm"), InvalidParameterError, ("format", "AudioFormat"))),
    case(Bad("sync-volume", lambda u: speech(u, volume=200), InvalidParameterError, ("volume", "200"))),
    case(Bad("sync-speech-rate-str", lambda u: speech(u, speech_rate="1.0"), InvalidParameterError, ("speech_rate",))),
    case(Bad("sync-additional-rate", lambda u: speech(u, additional_params={"rate": 9}), InvalidParameterError, ("speech_rate", "9"))),
    case(Bad("sync-voice-mismatch", lambda u: speech(u, voice="longxiaochun_v2"), VoiceModelMismatchError, ("longxiaochun_v2",))),
    case(Bad("sync-instruction-v2", lambda u: speech(u, instruction="Be calm.", **V2), InstructionError, ("instruction",))),
    case(Bad("sync-language", lambda u: speech(u, language_hints=["xx"]), InvalidParameterError, ("language_hints", "xx"))),
    case(Bad("sync-headers-crlf", lambda u: speech(u, headers={"X-A": "a\r\nb"}), InvalidParameterError, ("headers", "X-A"))),
    case(Bad("sync-api-key-lf", lambda u: speech(u, api_key="sk-a\nb"), InvalidParameterError, ("api_key",))),
    case(Bad("sync-remote-ws", lambda u: speech(REMOTE_WS, api_key="sk-a"), InvalidParameterError, ("ws://",))),
    case(Bad("sync-workspace", lambda u: speech(u, workspace="bad space"), InvalidParameterError, ("workspace",))),
    case(Bad("sync-timeouts-type", lambda u: speech(u, timeouts={"connect": 1}), InvalidParameterError, ("timeouts",))),
    case(Bad("sync-ping-interval", lambda u: speech(u, ping_interval=0), InvalidParameterError, ("ping_interval", "0"))),
    case(Bad("sync-call-over-2000", lambda u: speech(u).call("a" * 2001), TextLimitError, ("2001", "2000"))),
    case(Bad("sync-call-broken-ssml", lambda u: speech(u).call(BROKEN_SSML), SSMLError, ("SSML",))),
    case(Bad("sync-streaming-ssml", lambda u: speech(u).streaming_call("<speak>x</speak>"), SSMLError, ("SSML",))),
    case(Bad("sync-call-surrogate", lambda u: speech(u).call(SURROGATE), InvalidParameterError, ("invalid character",))),
    case(Bad("sync-call-bytes", lambda u: speech(u).call(b"abc"), InvalidParameterError, ("text", "bytes"))),
    case(Bad("sync-call-empty", lambda u: speech(u).call(""), InvalidParameterError, ("text",))),
    case(Bad("sync-call-whitespace", lambda u: speech(u).call("  \n "), InvalidParameterError, ("text",))),
]
# fmt: on


@pytest.mark.parametrize("bad", SYNC)
def test_sync_api_refuses(thread_server: EmbeddedServer, bad: Bad) -> None:
    assert isinstance(bad.error, type)
    opened = thread_server.connections_opened
    with pytest.raises(bad.error) as info:
        bad.make(thread_server.url)
    assert_names(str(info.value), bad.names)
    assert thread_server.connections_opened == opened


# -- the CLI ----------------------------------------------------------------------------------


def speak(*args: str) -> Callable[[str, Path], list[str]]:
    def argv(url: str, tmp: Path) -> list[str]:
        return ["speak", "--url", url, "-o", str(tmp / "out.wav"), *args]

    return argv


# fmt: off
CLI = [
    case(Bad("cli-volume", speak("--volume", "200", "Hi."), 1, ("volume=200",))),
    case(Bad("cli-speech-rate", speak("--speech-rate", "9", "Hi."), 1, ("speech_rate=9",))),
    case(Bad("cli-sample-rate", speak("--sample-rate", "0", "Hi."), 1, ("sample_rate=0",))),
    case(Bad("cli-sample-rate-type", speak("--sample-rate", "fast", "Hi."), 2, ("--sample-rate", "fast"))),
    case(Bad("cli-format", speak("--format", "flac", "Hi."), 2, ("--format", "flac"))),
    case(Bad("cli-language", speak("--language", "xx", "Hi."), 1, ("language_hints", "xx"))),
    case(Bad("cli-voice-mismatch", speak("--voice", "longxiaochun_v2", "Hi."), 1, ("longxiaochun_v2", "418"))),
    case(Bad("cli-empty", speak(""), 2, ("nothing to say",))),
    case(Bad("cli-whitespace", speak("   "), 2, ("nothing to say",))),
    case(Bad("cli-control-char", speak(CONTROL), 1, ("invalid character",))),
    case(Bad("cli-remote-ws", lambda u, tmp: ["speak", "--url", REMOTE_WS, "-o", str(tmp / "o.wav"), "Hi."], 1, ("ws://",))),
    case(Bad("cli-opus-22050", speak("--format", "opus", "--sample-rate", "22050", "Hi."), 1, ("22050",))),
    case(Bad("cli-missing-file", lambda u, tmp: ["speak", "--url", u, "-f", str(tmp / "missing.txt")], 2, ("missing.txt",))),
    case(Bad("cli-file-not-utf8", lambda u, tmp: ["speak", "--url", u, "-f", str(tmp / "latin1.txt")], 2, ("latin1.txt", "UTF-8"))),
    case(Bad("cli-output-dir-missing", lambda u, tmp: ["speak", "--url", u, "-o", str(tmp / "no" / "o.wav"), "Hi."], 2, ("o.wav",))),
]
# fmt: on


@pytest.mark.parametrize("bad", CLI)
def test_cli_refuses(thread_server: EmbeddedServer, bad: Bad, tmp_path: Path) -> None:
    (tmp_path / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    opened = thread_server.connections_opened
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main(bad.make(thread_server.url, tmp_path))
        except SystemExit as exc:  # argparse
            status = exc.code
    assert status == bad.error, err.getvalue()
    assert_names(err.getvalue(), bad.names)
    assert "Traceback" not in err.getvalue()
    assert thread_server.connections_opened == opened
    assert not (tmp_path / "out.wav").exists()


def test_the_table_covers_every_surface_with_at_least_40_inputs() -> None:
    total = len(CORE_CONSTRUCTION) + len(WHOLE_TEXT) + len(PUSHED_TEXT) + len(SYNC) + len(CLI)
    total += len(PIPECAT) + len(LIVEKIT) + len(ADAPTER_TEXT)
    assert total >= 40, total


# -- the adapters: construction ---------------------------------------------------------------


def pipecat_service(url: str, **settings: Any) -> Any:
    from pipecat_cosyvoice import CosyVoiceTTSService

    direct = {k: settings.pop(k) for k in ("api_key", "sample_rate", "voice") if k in settings}
    return CosyVoiceTTSService(url=url, settings=CosyVoiceTTSService.Settings(**settings), **direct)


def pipecat_factory(url: str, **config: Any) -> Any:
    from pipecat_cosyvoice import create_tts

    return create_tts({"url": url, **config})


def livekit_tts(url: str, **kwargs: Any) -> Any:
    from livekit.plugins import cosyvoice

    return cosyvoice.TTS(base_url=url, **kwargs)


def livekit_update(url: str, **changes: Any) -> None:
    livekit_tts(url).update_options(**changes)


# fmt: off
PIPECAT = [
    case(Bad("pipecat-volume", lambda u: pipecat_service(u, volume=500), InvalidParameterError, ("volume", "500"))),
    case(Bad("pipecat-speech-rate-str", lambda u: pipecat_service(u, speech_rate="fast"), InvalidParameterError, ("speech_rate", "fast"))),
    case(Bad("pipecat-voice-mismatch", lambda u: pipecat_service(u, voice="longxiaochun_v2"), VoiceModelMismatchError, ("longxiaochun_v2",))),
    case(Bad("pipecat-language", lambda u: pipecat_service(u, language="xx"), InvalidParameterError, ("language", "xx"))),
    case(Bad("pipecat-instruction-v2", lambda u: pipecat_service(u, instruction="Calm.", model="cosyvoice-v2", voice="longxiaochun_v2"), InstructionError, ("instruction",))),
    case(Bad("pipecat-sample-rate", lambda u: pipecat_service(u, sample_rate=-1), InvalidParameterError, ("sample_rate", "-1"))),
    case(Bad("pipecat-api-key-crlf", lambda u: pipecat_service(u, api_key="sk\r\nx"), InvalidParameterError, ("api_key",))),
    case(Bad("pipecat-remote-ws", lambda u: pipecat_service(REMOTE_WS), InvalidParameterError, ("ws://",))),
    case(Bad("pipecat-factory-unknown-key", lambda u: pipecat_factory(u, colour="red"), InvalidParameterError, ("colour",))),
    case(Bad("pipecat-factory-volume", lambda u: pipecat_factory(u, volume=200), InvalidParameterError, ("volume", "200"))),
]
# fmt: on

# fmt: off
LIVEKIT = [
    case(Bad("livekit-speech-rate", lambda u: livekit_tts(u, speech_rate=3), ValueError, ("speech_rate", "3"))),
    case(Bad("livekit-sample-rate-str", lambda u: livekit_tts(u, sample_rate="24000"), ValueError, ("sample_rate",))),
    case(Bad("livekit-voice-mismatch", lambda u: livekit_tts(u, voice="longxiaochun_v2"), ValueError, ("longxiaochun_v2", "418"))),
    case(Bad("livekit-language-empty", lambda u: livekit_tts(u, language=""), ValueError, ("language",))),
    case(Bad("livekit-language-unknown", lambda u: livekit_tts(u, language="xx"), ValueError, ("xx",))),
    case(Bad("livekit-instruction-v2", lambda u: livekit_tts(u, instruction="Calm.", **V2), ValueError, ("instruction",))),
    case(Bad("livekit-api-key-lf", lambda u: livekit_tts(u, api_key="sk\nx"), ValueError, ("api_key",))),
    case(Bad("livekit-remote-ws", lambda u: livekit_tts(REMOTE_WS), ValueError, ("ws://",))),
    case(Bad("livekit-no-key", lambda u: livekit_tts(None), Exception, ("DASHSCOPE_API_KEY",))),
    case(Bad("livekit-update-volume", lambda u: livekit_update(u, volume=-1), ValueError, ("volume", "-1"))),
]
# fmt: on


@pytest.mark.parametrize("bad", PIPECAT + LIVEKIT)
async def test_adapter_construction_refuses(server: EmbeddedServer, bad: Bad) -> None:
    assert isinstance(bad.error, type)
    with pytest.raises(bad.error) as info:
        bad.make(server.url)
    assert_names(str(info.value), bad.names)
    assert server.connections_opened == 0


# -- the adapters: text, refused in the framework's own way, and the next one spoken ----------

ADAPTER_TEXT = [
    pytest.param(CONTROL, "invalid character", id="control-char"),
    pytest.param(SURROGATE, "invalid character", id="lone-surrogate"),
    pytest.param("<speak>Hello", "SSML", id="ssml-on-streaming-input"),
    pytest.param("a" * 200_001, "200000", id="over-task-limit"),
]


@pytest.mark.parametrize(("text", "named"), ADAPTER_TEXT)
async def test_pipecat_bad_text_is_an_error_frame_and_the_next_is_spoken(
    server: EmbeddedServer, text: str, named: str
) -> None:
    from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test
    from pipecat_cosyvoice import CosyVoiceTTSService

    service = CosyVoiceTTSService(url=server.url, prewarm=False)
    down, up = await asyncio.wait_for(
        run_test(
            service,
            frames_to_send=[TTSSpeakFrame(text), TTSSpeakFrame("The next one.")],
            pipeline_params=PipelineParams(audio_out_sample_rate=24000),
        ),
        15,
    )
    errors = [f for f in up if isinstance(f, ErrorFrame)]
    assert errors and named in errors[0].error, [f.error for f in errors]
    assert [t.texts for t in server.tasks if t.texts] == [["The next one."]]
    audio = b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))
    assert len(audio) == next(t for t in server.tasks if t.texts).audio_bytes_sent


@pytest.mark.parametrize(("text", "named"), ADAPTER_TEXT)
async def test_livekit_bad_text_is_an_api_error_and_the_next_is_spoken(
    server: EmbeddedServer, text: str, named: str
) -> None:
    from livekit.agents import APIConnectOptions, APIStatusError

    no_retry = APIConnectOptions(max_retry=0, timeout=5.0)
    engine = livekit_tts(server.url)
    try:
        with pytest.raises(APIStatusError) as info:

            async def run() -> None:
                async with engine.stream(conn_options=no_retry) as stream:
                    stream.push_text(text)
                    stream.end_input()
                    async for _ in stream:
                        pass

            await asyncio.wait_for(run(), 10)
        assert info.value.status_code == 400 and not info.value.retryable
        assert named in str(info.value)
        frames = []

        async def good() -> None:
            async with engine.synthesize("The next one.", conn_options=no_retry) as stream:
                async for event in stream:
                    frames.append(event.frame)

        await asyncio.wait_for(good(), 10)
        assert (
            sum(len(f.data) for f in frames) * 2 >= next(t for t in server.tasks if t.texts).audio_bytes_sent
        )
    finally:
        await engine.aclose()
    assert [t.texts for t in server.tasks if t.texts] == [["The next one."]]
