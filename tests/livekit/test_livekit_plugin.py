"""Packaging, registration, options, factory and error mapping of the LiveKit plugin."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, get_args

import pytest
from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError, Plugin
from livekit.plugins import cosyvoice
from livekit.plugins.cosyvoice import factory, models
from livekit.plugins.cosyvoice.tts import _api_error

import cosyvoice_stream
from cosyvoice_stream import (
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    ProtocolError,
    ServerError,
    ServerTimeoutError,
    SSMLError,
    ThrottlingError,
    Timeouts,
    VoiceModelMismatchError,
)
from cosyvoice_stream.adapters import create_tts as create_any_tts
from cosyvoice_stream.options import LANGUAGES
from cosyvoice_stream.voices import MODELS, VOICES

ADAPTERS = Path(__file__).resolve().parents[2] / "adapters"
LOOPBACK = "ws://127.0.0.1:9/api-ws/v1/inference"  # never connected to in this module


def test_pep420_namespace_layout() -> None:
    assert not (ADAPTERS / "livekit" / "__init__.py").exists()
    assert not (ADAPTERS / "livekit" / "plugins" / "__init__.py").exists()
    import livekit.plugins

    # The namespace merges our directory with the installed livekit packages.
    assert str(ADAPTERS / "livekit" / "plugins") in list(livekit.plugins.__path__)
    assert Path(cosyvoice.__file__).parent == ADAPTERS / "livekit" / "plugins" / "cosyvoice"


def test_registered_with_livekit_on_import() -> None:
    ours = [p for p in Plugin.registered_plugins if p.package == "livekit.plugins.cosyvoice"]
    assert len(ours) == 1
    assert ours[0].title == "livekit.plugins.cosyvoice"
    assert ours[0].version == cosyvoice_stream.__version__ == cosyvoice.__version__
    assert ours[0].logger is not None and ours[0].logger.name == "livekit.plugins.cosyvoice"


def _flatten(literal: Any) -> set[str]:
    values: set[str] = set()
    for arg in get_args(literal):
        values |= _flatten(arg) if get_args(arg) else {arg}
    return values


def test_model_and_voice_literals_match_the_core_tables() -> None:
    assert _flatten(models.TTSModels) == set(MODELS)
    assert _flatten(models.TTSVoices) == {v.id for v in VOICES}
    for generation, literal in (
        ("v3", models.TTSVoicesV3),
        ("v2", models.TTSVoicesV2),
        ("v1", models.TTSVoicesV1),
    ):
        expected = {v.id for v in VOICES if any(m.startswith(f"cosyvoice-{generation}") for m in v.models)}
        assert _flatten(literal) == expected
    assert _flatten(models.TTSLanguages) == set(LANGUAGES)


def test_capabilities_model_provider_and_rate() -> None:
    tts = cosyvoice.TTS(base_url=LOOPBACK, model="cosyvoice-v3-plus", sample_rate=16000)
    assert tts.capabilities.streaming and tts.capabilities.aligned_transcript
    assert (tts.model, tts.provider, tts.sample_rate, tts.num_channels) == (
        "cosyvoice-v3-plus",
        "DashScope",
        16000,
        1,
    )
    assert tts.synthesizer.options.sample_rate == 16000  # supported: requested natively
    assert not cosyvoice.TTS(base_url=LOOPBACK, word_timestamps=False).capabilities.aligned_transcript
    odd = cosyvoice.TTS(base_url=LOOPBACK, sample_rate=32000)
    assert odd.sample_rate == 32000 and odd.synthesizer.options.sample_rate == 44100


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"speech_rate": 3.0}, "speech_rate"),
        ({"volume": 101}, "volume"),
        ({"voice": "longxiaochun_v2"}, "voice"),  # a v2 voice with the default v3 model (418)
        ({"model": "cosyvoice-v2", "voice": "longxiaochun_v2", "instruction": "calm"}, "instruction"),
        ({"language": "xx"}, "language"),
        ({"language": ""}, "language"),
        ({"sample_rate": 500}, "sample_rate"),
    ],
)
def test_invalid_options_are_refused_before_any_connection(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        cosyvoice.TTS(base_url=LOOPBACK, **kwargs)


def test_language_accepts_bcp47_tags() -> None:
    tts = cosyvoice.TTS(base_url=LOOPBACK, language="zh-Hans-CN")
    assert tts.synthesizer.options.language_hints == ("zh",)
    tts.update_options(language="cmn")
    assert tts.synthesizer.options.language_hints == ("zh",)
    tts.update_options(language="en-US")
    assert tts.synthesizer.options.language_hints == ("en",)
    tts.update_options(language=None)
    assert tts.synthesizer.options.language_hints is None


def test_update_options_validates_and_keeps_options_on_error() -> None:
    tts = cosyvoice.TTS(base_url=LOOPBACK, voice="longanyang")
    tts.update_options(voice="longanhuan", speech_rate=1.5, instruction="你说话的情感是sad。")
    options = tts.synthesizer.options
    assert (options.voice, options.speech_rate, options.instruction) == (
        "longanhuan",
        1.5,
        "你说话的情感是sad。",
    )
    with pytest.raises(ValueError, match="pitch_rate"):
        tts.update_options(voice="longhuhu_v3", pitch_rate=9.0)
    assert tts.synthesizer.options == options  # nothing of the failed update applied
    tts.update_options(model="cosyvoice-v2", voice="longxiaochun_v2", instruction=None)
    assert tts.model == "cosyvoice-v2"


def test_api_key_is_not_in_repr() -> None:
    tts = cosyvoice.TTS(base_url="wss://dashscope.example/api-ws/v1/inference", api_key="sk-very-secret-1234")
    assert "sk-very-secret-1234" not in repr(tts)
    assert "hidden" in repr(tts)


def test_missing_key_for_the_cloud_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="DASHSCOPE_API_KEY"):
        cosyvoice.TTS()


def test_prewarm_without_an_event_loop_is_a_no_op() -> None:
    tts = cosyvoice.TTS(base_url=LOOPBACK)
    tts.prewarm()  # the worker may call it before a loop runs: no error, no connection
    assert tts.synthesizer.pool_stats.opened == 0


# -- factory ----------------------------------------------------------------


def test_factory_builds_the_plugin_from_a_mapping() -> None:
    tts = factory.create_tts(
        {
            "url": LOOPBACK,
            "voice": "longanhuan",
            "sample_rate": 16000,
            "language": "en",
            "timeouts": {"connect": 3.0, "first_audio": 4.0},
        }
    )
    assert isinstance(tts, cosyvoice.TTS)
    assert tts.synthesizer.url == LOOPBACK
    assert tts.synthesizer.options.voice == "longanhuan"
    assert tts.sample_rate == 16000
    assert tts.synthesizer.timeouts == Timeouts(connect=3.0, first_audio=4.0)


def test_factory_names_every_unknown_key() -> None:
    with pytest.raises(ValueError, match=r"unknown LiveKit CosyVoice options: rate, vioce") as info:
        factory.create_tts({"base_url": LOOPBACK, "vioce": "x", "rate": 1.0})
    assert "voice" in str(info.value)  # the accepted keys are listed
    with pytest.raises(ValueError, match="unknown timeouts option"):
        factory.create_tts({"base_url": LOOPBACK, "timeouts": {"conect": 1.0}})
    with pytest.raises(ValueError, match="not both"):
        factory.create_tts({"base_url": LOOPBACK, "url": LOOPBACK})
    with pytest.raises(ValueError, match="mapping"):
        factory.create_tts([("voice", "x")])  # type: ignore[arg-type]


def test_entry_point_resolves_to_the_factory() -> None:
    (point,) = [
        ep
        for ep in importlib.metadata.entry_points(group="cosyvoice_stream.adapters")
        if ep.name == "livekit"
    ]
    assert point.load() is factory.create_tts
    tts = create_any_tts({"url": LOOPBACK, "voice": "longanhuan"}, framework="livekit", env={})
    assert isinstance(tts, cosyvoice.TTS) and tts.synthesizer.options.voice == "longanhuan"


# -- error mapping ------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind", "status", "retryable"),
    [
        (AuthenticationError("refused", code="HTTP401"), APIStatusError, 401, False),
        (AuthenticationError("refused", code="HTTP403"), APIStatusError, 403, False),
        (AuthenticationError("bad key", code="InvalidApiKey"), APIStatusError, 401, False),
        (VoiceModelMismatchError("418", code="InvalidParameter"), APIStatusError, 400, False),
        (SSMLError("not here"), APIStatusError, 400, False),
        (ThrottlingError("slow down", code="Throttling.RateQuota"), APIStatusError, 429, True),
        (ServerError("boom", code="InternalError"), APIStatusError, 500, True),
        (ServerError("handshake", code="HTTP502"), APIStatusError, 502, True),
        (ConnectionLostError("dropped"), APIConnectionError, None, True),
        (ClientTimeoutError("slow"), APITimeoutError, None, True),
        (ServerTimeoutError("23 s without text"), APITimeoutError, None, False),
        (ProtocolError("garbage"), APIError, None, False),
    ],
)
def test_core_errors_map_to_livekit_errors(
    error: CosyVoiceError, kind: type[APIError], status: int | None, retryable: bool
) -> None:
    mapped = _api_error(error)
    assert type(mapped) is kind
    assert mapped.retryable is retryable
    if status is not None:
        assert isinstance(mapped, APIStatusError) and mapped.status_code == status
