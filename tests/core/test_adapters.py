"""Adapters found through entry points and built from plain configuration."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from cosyvoice_stream import adapters
from cosyvoice_stream.adapters import AdapterUnavailableError, config_from_env, create_tts, list_adapters
from cosyvoice_stream.errors import InvalidParameterError


def test_both_frameworks_registered_and_available() -> None:
    infos = {info.name: info for info in list_adapters()}
    assert set(infos) >= {"pipecat", "livekit"}
    assert infos["pipecat"].available and infos["livekit"].available


def test_pipecat_service_from_a_config_mapping() -> None:
    from pipecat_cosyvoice import CosyVoiceTTSService

    tts = create_tts(
        {
            "framework": "pipecat",
            "model": "cosyvoice-v3-flash",
            "voice": "longanhuan",
            "url": "ws://127.0.0.1:9/x",
        }
    )
    assert isinstance(tts, CosyVoiceTTSService)


def test_livekit_tts_from_environment_variables() -> None:
    from livekit.plugins.cosyvoice import TTS

    env = {
        "COSYVOICE_FRAMEWORK": "livekit",
        "COSYVOICE_VOICE": "longanhuan",
        "COSYVOICE_SAMPLE_RATE": "16000",
        "COSYVOICE_URL": "ws://127.0.0.1:9/x",
    }
    tts = create_tts(env=env)
    assert isinstance(tts, TTS)
    assert tts.sample_rate == 16000


def test_config_wins_over_environment_and_values_are_converted() -> None:
    env = {"COSYVOICE_VOICE": "from-env", "COSYVOICE_SPEECH_RATE": "1.25", "COSYVOICE_VOLUME": "70"}
    assert config_from_env(env) == {"voice": "from-env", "speech_rate": 1.25, "volume": 70}
    with pytest.raises(InvalidParameterError, match="COSYVOICE_VOLUME='loud'"):
        config_from_env({"COSYVOICE_VOLUME": "loud"})


def test_unknown_and_missing_frameworks_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidParameterError, match="no framework"):
        create_tts({}, env={})
    with pytest.raises(AdapterUnavailableError, match="framework='rasa' has no adapter"):
        create_tts({"framework": "rasa"}, env={})
    ghost = EntryPoint("ghost", "no_such_framework_module:create_tts", adapters.ENTRY_POINT_GROUP)
    monkeypatch.setattr(adapters, "_entry_points", lambda: {"ghost": ghost})
    [info] = list_adapters()
    assert not info.available and "cosyvoice-stream[ghost]" in info.install_hint
    with pytest.raises(AdapterUnavailableError, match=r"pip install 'cosyvoice-stream\[ghost\]'"):
        create_tts({"framework": "ghost"}, env={})


def test_unknown_keys_are_named() -> None:
    with pytest.raises((InvalidParameterError, ValueError, TypeError), match="colour"):
        create_tts({"framework": "pipecat", "colour": "blue", "url": "ws://127.0.0.1:9/x"}, env={})
