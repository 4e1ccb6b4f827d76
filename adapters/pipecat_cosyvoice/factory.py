"""Build a ``CosyVoiceTTSService`` from a plain mapping (configuration files, env).

Registered as the ``pipecat`` entry point of ``cosyvoice_stream.adapters``, so
``cosyvoice_stream.adapters.create_tts({"framework": "pipecat", ...})`` gives a
Pipecat service without importing this module by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipecat.services.tts_service import TextAggregationMode

from cosyvoice_stream import InvalidParameterError
from cosyvoice_stream.adapters import check_config

from .tts import CosyVoiceTTSService, CosyVoiceTTSSettings

#: Keys that go to the constructor.
CONSTRUCTOR_KEYS: frozenset[str] = frozenset(
    {
        "api_key",
        "url",
        "region",
        "workspace",
        "sample_rate",
        "word_timestamps",
        "prewarm",
        "text_aggregation_mode",
        "timeouts",
        "early_flush",
    }
)
#: Keys that go to ``CosyVoiceTTSService.Settings``.
SETTINGS_KEYS: frozenset[str] = frozenset(
    {
        "model",
        "voice",
        "language",
        "speech_rate",
        "pitch_rate",
        "volume",
        "seed",
        "instruction",
        "enable_aigc_tag",
        "aigc_propagator",
        "aigc_propagate_id",
        "additional_params",
    }
)
KNOWN_KEYS: frozenset[str] = CONSTRUCTOR_KEYS | SETTINGS_KEYS


def create_tts(config: Mapping[str, Any]) -> CosyVoiceTTSService:
    """A ``CosyVoiceTTSService`` configured by ``config``.

    Keys: model, voice, language, speech_rate, pitch_rate, volume, seed,
    instruction, enable_aigc_tag, aigc_propagator, aigc_propagate_id,
    additional_params (settings, changeable at runtime); api_key, url, region,
    workspace, sample_rate, word_timestamps, prewarm, text_aggregation_mode
    ("token" or "sentence"), timeouts (a mapping of ``Timeouts`` fields),
    early_flush (bool, default true).
    A ``framework`` key, if present, must be ``"pipecat"``. Unknown keys are
    refused with an error that names them; values are validated by the
    service's constructor.
    """
    values = check_config(config, KNOWN_KEYS | {"framework"}, what="Pipecat CosyVoice")
    framework = values.pop("framework", "pipecat")
    if framework != "pipecat":
        raise InvalidParameterError(
            f"framework={framework!r} given to the pipecat adapter; expected 'pipecat'",
            parameter="framework",
        )
    settings = CosyVoiceTTSSettings(**{k: v for k, v in values.items() if k in SETTINGS_KEYS})
    kwargs: dict[str, Any] = {k: v for k, v in values.items() if k in CONSTRUCTOR_KEYS}
    mode = kwargs.get("text_aggregation_mode")
    if isinstance(mode, str) and not isinstance(mode, TextAggregationMode):
        try:
            kwargs["text_aggregation_mode"] = TextAggregationMode(mode.lower())
        except ValueError:
            raise InvalidParameterError(
                f"text_aggregation_mode={mode!r} is invalid: expected 'token' or 'sentence'",
                parameter="text_aggregation_mode",
            ) from None
    return CosyVoiceTTSService(settings=settings, **kwargs)
