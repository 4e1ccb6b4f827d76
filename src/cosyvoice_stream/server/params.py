"""Validation of run-task parameters, with the service's error codes and messages.

Like the service, the server speaks only the voices of the requested model:
the catalogue's system voices of that model (``cosyvoice_stream.voices``)
and voices cloned for it. Which cloned voices exist is not this module's
business: the caller passes a ``cloned_voice_model`` lookup (voice id -> the
model it was cloned for, or None); the default knows none.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..options import FORMATS, LANGUAGES, MAX_INSTRUCTION_LENGTH, SUPPORTED_SAMPLE_RATES
from ..voices import INSTRUCTION_MODELS, KNOWN_MODELS, Voice, get_voice
from .encoders import OPUS_SAMPLE_RATES

#: Voice id -> the model the voice was cloned for, or None when it is not a cloned voice.
ClonedVoiceModel = Callable[[str], "str | None"]

DEFAULT_FORMAT = "mp3"
DEFAULT_SAMPLE_RATE = 22050
MISMATCH_MESSAGE = "[tts:]Engine return error code: 418"
INSTRUCTION_MESSAGE = "[tts:]Engine return error code: 428"


class TaskError(Exception):
    """A task-failed event to send: ``code`` and ``message`` as the service words them."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def invalid(message: str) -> TaskError:
    return TaskError("InvalidParameter", message)


def no_cloned_voices(voice: str) -> str | None:
    """The default ``cloned_voice_model``: no voice is a cloned one."""
    return None


def check_voice(
    model: str, voice: str, cloned_voice_model: ClonedVoiceModel = no_cloned_voices
) -> Voice | None:
    """Refuse, as the service does, a voice ``model`` cannot speak.

    Returns the catalogue entry of a system voice, or None for a voice cloned
    for ``model``. Any other voice (unknown, misspelled, of another model, or
    cloned for another model) raises the service's ``InvalidParameter``
    ``[tts:]Engine return error code: 418``.
    """
    known = get_voice(voice)
    if known is not None:
        if model not in known.models:
            raise invalid(MISMATCH_MESSAGE)
        return known
    if cloned_voice_model(voice) != model:
        raise invalid(MISMATCH_MESSAGE)
    return None


@dataclass(frozen=True)
class TaskParameters:
    """The parameters of one task, validated, with defaults applied."""

    model: str
    voice: str
    format: str = DEFAULT_FORMAT
    sample_rate: int = DEFAULT_SAMPLE_RATE
    volume: int = 50
    rate: float = 1.0
    pitch: float = 1.0
    bit_rate: int = 32
    seed: int = 0
    word_timestamps: bool = False
    language: str | None = None
    instruction: str | None = None
    enable_ssml: bool = False

    @property
    def voice_languages(self) -> tuple[str, ...]:
        known = get_voice(self.voice)
        return known.languages if known is not None else ()

    @property
    def voice_has_word_timestamps(self) -> bool:
        # Cloned voices of the v2/v3 models have them (the voice list's rule).
        known = get_voice(self.voice)
        return known.word_timestamps if known is not None else True


def _number(name: str, value: Any, lo: float, hi: float, *, integer: bool) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if ok and integer and isinstance(value, float) and not value.is_integer():
        ok = False
    if not ok or not lo <= value <= hi:
        kind = "an integer" if integer else "a number"
        raise invalid(f"Parameter '{name}' must be {kind} in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"Parameter '{name}' must be a boolean, got {value!r}")
    return value


def parse_run_task(
    payload: Any, *, cloned_voice_model: ClonedVoiceModel = no_cloned_voices
) -> tuple[TaskParameters, dict[str, Any]]:
    """Validate a run-task payload; returns the parameters and the raw parameter dict.

    ``cloned_voice_model``: see ``check_voice``. Raises ``TaskError`` with the
    service's code and message.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("input"), dict):
        raise invalid("task can not be null")
    raw = payload.get("parameters")
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise invalid("Parameter 'parameters' must be an object")
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise invalid("Model can not be null")
    if model not in KNOWN_MODELS:
        raise TaskError("ModelNotFound", f"Model not found ({model})!")
    voice = raw.get("voice")
    if not isinstance(voice, str) or not voice.strip():
        raise invalid("Request voice is invalid!")
    known = check_voice(model, voice, cloned_voice_model)

    fmt = raw.get("format", DEFAULT_FORMAT)
    if not isinstance(fmt, str):
        raise invalid(f"Parameter 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    fmt = fmt.lower()
    if fmt == "default":  # the SDK's AudioFormat.DEFAULT
        fmt = DEFAULT_FORMAT
    if fmt not in FORMATS:
        raise invalid(f"Parameter 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")

    sample_rate = raw.get("sample_rate", DEFAULT_SAMPLE_RATE)
    if sample_rate == 0 and not isinstance(sample_rate, bool):  # AudioFormat.DEFAULT
        sample_rate = DEFAULT_SAMPLE_RATE
    if isinstance(sample_rate, float) and sample_rate.is_integer():
        sample_rate = int(sample_rate)
    if isinstance(sample_rate, bool) or sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise invalid(
            f"Parameter 'sample_rate' must be one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES))},"
            f" got {sample_rate!r}"
        )
    if fmt == "opus" and sample_rate not in OPUS_SAMPLE_RATES:
        raise invalid(
            f"Parameter 'sample_rate' {sample_rate} is not supported by opus (8000, 16000, 24000, 48000)"
        )

    volume = int(_number("volume", raw.get("volume", 50), 0, 100, integer=True))
    rate = _number("rate", raw.get("rate", 1.0), 0.5, 2.0, integer=False)
    pitch = _number("pitch", raw.get("pitch", 1.0), 0.5, 2.0, integer=False)
    bit_rate = 32
    if fmt == "opus" and raw.get("bit_rate") is not None:
        bit_rate = int(_number("bit_rate", raw["bit_rate"], 6, 510, integer=True))
    seed = int(_number("seed", raw.get("seed", 0), 0, 65535, integer=True))
    words = _bool("word_timestamp_enabled", raw.get("word_timestamp_enabled", False))
    ssml = _bool("enable_ssml", raw.get("enable_ssml", False))

    language: str | None = None
    hints = raw.get("language_hints")
    if hints is not None:
        if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
            raise invalid(f"Parameter 'language_hints' must be a list of strings, got {hints!r}")
        if hints:
            if hints[0] not in LANGUAGES:
                raise invalid(
                    f"Parameter 'language_hints' {hints[0]!r} is not supported:"
                    f" expected one of {', '.join(LANGUAGES)}"
                )
            language = hints[0]

    instruction = raw.get("instruction")
    if instruction is not None:
        if not isinstance(instruction, str) or len(instruction) > MAX_INSTRUCTION_LENGTH:
            raise invalid(
                f"Parameter 'instruction' must be a string of at most {MAX_INSTRUCTION_LENGTH} characters"
            )
        if model not in INSTRUCTION_MODELS or (known is not None and not known.instruct):
            raise invalid(INSTRUCTION_MESSAGE)

    params = TaskParameters(
        model=model,
        voice=voice,
        format=fmt,
        sample_rate=int(sample_rate),
        volume=volume,
        rate=rate,
        pitch=pitch,
        bit_rate=bit_rate,
        seed=seed,
        word_timestamps=words,
        language=language,
        instruction=instruction,
        enable_ssml=ssml,
    )
    return params, dict(raw)
