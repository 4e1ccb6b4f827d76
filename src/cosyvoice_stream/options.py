"""Synthesis parameters: every parameter of the seed document, validated once.

``SynthesisOptions`` is immutable; ``replace()`` returns a validated copy.
Errors name the parameter, the value and the allowed range, and are raised at
construction, before any connection is made.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal

from .errors import InstructionError, InvalidParameterError, SSMLError, VoiceModelMismatchError
from .languages import LANGUAGES
from .languages import language_hint as language_hint  # re-exported: options.language_hint is public
from .voices import (
    DEFAULT_MODEL,
    DEFAULT_VOICE,
    FEATURE_NAMES,
    INSTRUCTION_MODELS,
    KNOWN_MODELS,
    Feature,
    Voice,
    get_voice,
    voice_models,
)

logger = logging.getLogger("cosyvoice_stream")

#: Sample rates the service produces natively.
SUPPORTED_SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 22050, 24000, 44100, 48000)
FORMATS: tuple[str, ...] = ("pcm", "wav", "mp3", "opus")
#: Opus runs at these rates only (the SDK's OGG_OPUS members; the service refuses others).
OPUS_SAMPLE_RATES: tuple[int, ...] = (8000, 16000, 24000, 48000)
MAX_INSTRUCTION_LENGTH = 128


class AudioFormat(Enum):
    """Audio encoding and sample rate, with the official SDK's member names.

    Each member has ``format``, ``sample_rate``, ``channels`` and ``bit_rate``
    (kbps; 0 where it does not apply). ``DEFAULT`` means mp3 at 22050 Hz.
    """

    DEFAULT = ("Default", 0, "0", 0)
    WAV_8000HZ_MONO_16BIT = ("wav", 8000, "mono", 0)
    WAV_16000HZ_MONO_16BIT = ("wav", 16000, "mono", 16)
    WAV_22050HZ_MONO_16BIT = ("wav", 22050, "mono", 16)
    WAV_24000HZ_MONO_16BIT = ("wav", 24000, "mono", 16)
    WAV_44100HZ_MONO_16BIT = ("wav", 44100, "mono", 16)
    WAV_48000HZ_MONO_16BIT = ("wav", 48000, "mono", 16)

    MP3_8000HZ_MONO_128KBPS = ("mp3", 8000, "mono", 128)
    MP3_16000HZ_MONO_128KBPS = ("mp3", 16000, "mono", 128)
    MP3_22050HZ_MONO_256KBPS = ("mp3", 22050, "mono", 256)
    MP3_24000HZ_MONO_256KBPS = ("mp3", 24000, "mono", 256)
    MP3_44100HZ_MONO_256KBPS = ("mp3", 44100, "mono", 256)
    MP3_48000HZ_MONO_256KBPS = ("mp3", 48000, "mono", 256)

    PCM_8000HZ_MONO_16BIT = ("pcm", 8000, "mono", 16)
    PCM_16000HZ_MONO_16BIT = ("pcm", 16000, "mono", 16)
    PCM_22050HZ_MONO_16BIT = ("pcm", 22050, "mono", 16)
    PCM_24000HZ_MONO_16BIT = ("pcm", 24000, "mono", 16)
    PCM_44100HZ_MONO_16BIT = ("pcm", 44100, "mono", 16)
    PCM_48000HZ_MONO_16BIT = ("pcm", 48000, "mono", 16)

    OGG_OPUS_8KHZ_MONO_32KBPS = ("opus", 8000, "mono", 32)
    OGG_OPUS_8KHZ_MONO_16KBPS = ("opus", 8000, "mono", 16)
    OGG_OPUS_16KHZ_MONO_16KBPS = ("opus", 16000, "mono", 16)
    OGG_OPUS_16KHZ_MONO_32KBPS = ("opus", 16000, "mono", 32)
    OGG_OPUS_16KHZ_MONO_64KBPS = ("opus", 16000, "mono", 64)
    OGG_OPUS_24KHZ_MONO_16KBPS = ("opus", 24000, "mono", 16)
    OGG_OPUS_24KHZ_MONO_32KBPS = ("opus", 24000, "mono", 32)
    OGG_OPUS_24KHZ_MONO_64KBPS = ("opus", 24000, "mono", 64)
    OGG_OPUS_48KHZ_MONO_16KBPS = ("opus", 48000, "mono", 16)
    OGG_OPUS_48KHZ_MONO_32KBPS = ("opus", 48000, "mono", 32)
    OGG_OPUS_48KHZ_MONO_64KBPS = ("opus", 48000, "mono", 64)

    def __init__(self, format: str, sample_rate: int, channels: str, bit_rate: int) -> None:
        self.format = format
        self.sample_rate = sample_rate
        self.channels = channels
        self.bit_rate = bit_rate

    @property
    def wire_format(self) -> str:
        """The format name the service expects (``DEFAULT`` is mp3)."""
        return "mp3" if self is AudioFormat.DEFAULT else self.format

    @property
    def wire_sample_rate(self) -> int:
        """The sample rate the service is asked for (``DEFAULT`` is 22050 Hz)."""
        return 22050 if self is AudioFormat.DEFAULT else self.sample_rate

    def __str__(self) -> str:
        return f"{self.wire_format.upper()} with {self.wire_sample_rate}Hz sample rate, {self.channels} channel, {self.bit_rate}"


#: Wire parameter names that ``additional_params`` may override -> the field they stand for.
_WIRE_FIELDS: dict[str, str] = {
    "voice": "voice",
    "format": "format",
    "sample_rate": "sample_rate",
    "volume": "volume",
    "rate": "speech_rate",
    "pitch": "pitch_rate",
    "bit_rate": "bit_rate",
    "seed": "seed",
    "word_timestamp_enabled": "word_timestamp_enabled",
    "language_hints": "language_hints",
    "instruction": "instruction",
    "enable_aigc_tag": "enable_aigc_tag",
}


def resolve_word_timestamps(requested: bool | Literal["auto"], voice: str) -> bool:
    """What ``word_timestamp_enabled=requested`` means for ``voice``.

    ``"auto"`` is True unless the catalogue says the voice has no word
    timestamps (unknown and cloned voices: True, the service decides). For the
    adapters, where timings are a default rather than a request.
    """
    if requested != "auto":
        return bool(requested)
    known = get_voice(voice)
    return known is None or known.word_timestamps


def _unsupported(voice: Voice, feature: Feature, instead: str) -> str:
    return (
        f"voice={voice.id!r} does not support {FEATURE_NAMES[feature]}: use {instead} with this"
        f" voice (`cosyvoice-stream voices --supports {feature}` lists the voices that do)"
    )


def _fail(name: str, value: object, allowed: str) -> InvalidParameterError:
    return InvalidParameterError(f"{name}={value!r} is invalid: expected {allowed}", parameter=name)


def _check_number(name: str, value: object, lo: float, hi: float, *, integer: bool) -> None:
    kind = "an int" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(name, value, f"{kind} in [{lo:g}, {hi:g}]")
    if integer and not isinstance(value, int):
        raise _fail(name, value, f"{kind} in [{lo:g}, {hi:g}]")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise _fail(name, value, f"{kind} in [{lo:g}, {hi:g}]")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _fail(name, value, "True or False")


def _check_name(name: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "\r\n\x00"):
        raise _fail(name, value, "a non-empty single-line string")


@dataclass(frozen=True)
class SynthesisOptions:
    """All request parameters of one synthesis task, validated at construction.

    Names follow the official SDK (``speech_rate``, ``pitch_rate``); the wire
    names are the protocol module's business. ``additional_params`` is merged
    into the request parameters last and may override anything, as in the SDK.

    Voices the catalogue (``cosyvoice_stream.voices``) knows are checked
    against it: their model, and ``word_timestamp_enabled=True`` /
    ``instruction`` (its documented format included) only where the voice
    supports them. Unknown voices (new system voices, cloned ids) pass.

    ``word_timestamp_enabled="auto"`` asks for word timings where the voice
    has them: it becomes True, or False (logged once) for a catalogue voice
    without them; ``word_timestamps_auto`` then records that it was "auto",
    so ``replace(voice=...)`` decides again for the new voice.
    """

    model: str = DEFAULT_MODEL
    voice: str = DEFAULT_VOICE
    format: str = "pcm"
    sample_rate: int = 24000
    volume: int = 50
    speech_rate: float = 1.0
    pitch_rate: float = 1.0
    bit_rate: int | None = None
    word_timestamp_enabled: bool | Literal["auto"] = False
    seed: int = 0
    language_hints: tuple[str, ...] | None = None
    instruction: str | None = None
    enable_aigc_tag: bool = False
    aigc_propagator: str | None = None
    aigc_propagate_id: str | None = None
    additional_params: Mapping[str, Any] = field(default_factory=dict)
    word_timestamps_auto: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        _check_name("model", self.model)
        _check_name("voice", self.voice)
        if self.format not in FORMATS:
            raise _fail("format", self.format, f"one of {', '.join(FORMATS)}")
        if isinstance(self.sample_rate, bool) or self.sample_rate not in SUPPORTED_SAMPLE_RATES:
            raise _fail(
                "sample_rate",
                self.sample_rate,
                f"one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES))} Hz",
            )
        if self.format == "opus" and self.sample_rate not in OPUS_SAMPLE_RATES:
            raise _fail(
                "sample_rate",
                self.sample_rate,
                f"one of {', '.join(map(str, OPUS_SAMPLE_RATES))} Hz with format='opus'",
            )
        _check_number("volume", self.volume, 0, 100, integer=True)
        _check_number("speech_rate", self.speech_rate, 0.5, 2.0, integer=False)
        _check_number("pitch_rate", self.pitch_rate, 0.5, 2.0, integer=False)
        if self.bit_rate is not None:
            _check_number("bit_rate", self.bit_rate, 6, 510, integer=True)
            if self.format != "opus":
                raise _fail("bit_rate", self.bit_rate, "no bit_rate unless format='opus'")
        fresh_auto = self.word_timestamp_enabled == "auto"
        if fresh_auto:
            object.__setattr__(self, "word_timestamps_auto", True)
        else:
            _check_bool("word_timestamp_enabled", self.word_timestamp_enabled)
        _check_bool("word_timestamps_auto", self.word_timestamps_auto)
        _check_number("seed", self.seed, 0, 65535, integer=True)
        self._check_language_hints()
        self._check_instruction()
        _check_bool("enable_aigc_tag", self.enable_aigc_tag)
        for name in ("aigc_propagator", "aigc_propagate_id"):
            value = getattr(self, name)
            if value is not None:
                _check_name(name, value)
                if not self.enable_aigc_tag:
                    raise _fail(name, value, "enable_aigc_tag=True when it is set")
        if not isinstance(self.additional_params, Mapping) or not all(
            isinstance(k, str) for k in self.additional_params
        ):
            raise _fail("additional_params", self.additional_params, "a mapping with str keys")
        object.__setattr__(self, "additional_params", dict(self.additional_params))
        self._check_voice_model()
        self._check_voice_features(log_degraded=fresh_auto)
        self._check_additional_overrides()

    def _check_additional_overrides(self) -> None:
        """Seed parameters given through ``additional_params`` (which override the
        request's, as in the SDK) are validated like the fields they override."""
        overrides = {
            field_name: self.additional_params[wire]
            for wire, field_name in _WIRE_FIELDS.items()
            if wire in self.additional_params
        }
        if not overrides:
            return
        if "word_timestamp_enabled" in overrides:  # sent as given, whatever "auto" chose
            overrides["word_timestamps_auto"] = overrides["word_timestamp_enabled"] == "auto"
        if "language_hints" in overrides and isinstance(overrides["language_hints"], list):
            overrides["language_hints"] = tuple(overrides["language_hints"])
        try:
            dataclasses.replace(self, additional_params={}, **overrides)
        except InvalidParameterError as exc:
            raise type(exc)(  # keeps the kind, e.g. VoiceModelMismatchError
                f"additional_params overrides a checked parameter: {exc.message}",
                parameter="additional_params",
            ) from None

    def _check_language_hints(self) -> None:
        hints = self.language_hints
        if hints is None:
            return
        if isinstance(hints, str) or not isinstance(hints, Sequence):
            raise _fail("language_hints", hints, f"a list with one of {', '.join(LANGUAGES)}")
        hints = tuple(hints)
        if len(hints) != 1 or hints[0] not in LANGUAGES:
            raise _fail(
                "language_hints",
                list(hints),
                f"a list of exactly one of {', '.join(LANGUAGES)} (the service reads only the first)",
            )
        object.__setattr__(self, "language_hints", hints)

    def _check_instruction(self) -> None:
        if self.instruction is None:
            return
        if not isinstance(self.instruction, str) or not self.instruction.strip():
            raise _fail("instruction", self.instruction, "a non-empty string")
        if len(self.instruction) > MAX_INSTRUCTION_LENGTH:
            raise _fail(
                "instruction",
                self.instruction[:20] + "...",
                f"at most {MAX_INSTRUCTION_LENGTH} characters (got {len(self.instruction)})",
            )
        if self.model in KNOWN_MODELS and self.model not in INSTRUCTION_MODELS:
            raise InstructionError(
                f"instruction is not supported by model={self.model!r}:"
                f" only {', '.join(sorted(INSTRUCTION_MODELS))} accept it",
                parameter="instruction",
            )

    def _check_voice_model(self) -> None:
        models = voice_models(self.voice)
        if models is not None and self.model in KNOWN_MODELS and self.model not in models:
            kind = "a system voice" if get_voice(self.voice) is not None else "a cloned voice"
            raise VoiceModelMismatchError(
                f"voice={self.voice!r} belongs to the {', '.join(models)} models ({kind}) and cannot"
                f" be used with model={self.model!r} (the service would fail with code 418)",
                parameter="voice",
            )

    def _check_voice_features(self, *, log_degraded: bool) -> None:
        """What a catalogue voice does not support is refused; "auto" timestamps resolved.

        ``log_degraded``: "auto" was given now (not carried over by a copy), so
        a voice without timestamps is logged once, where the choice is made.
        """
        voice = get_voice(self.voice)
        if self.word_timestamps_auto:
            enabled = resolve_word_timestamps("auto", self.voice)
            object.__setattr__(self, "word_timestamp_enabled", enabled)
            if not enabled and log_degraded:
                logger.info(
                    "voice %r has no word timestamps: text is delivered without word timings",
                    self.voice,
                )
        elif self.word_timestamp_enabled and voice is not None and not voice.word_timestamps:
            raise InvalidParameterError(
                _unsupported(voice, "timestamps", "word_timestamp_enabled=False (or 'auto')"),
                parameter="word_timestamp_enabled",
            )
        if self.instruction is None or voice is None:
            return
        if not voice.instruct:
            raise InstructionError(_unsupported(voice, "instruct", "no instruction"), parameter="instruction")
        spec = voice.instruct_spec.get(self.model)
        if spec is not None and not spec.accepts(self.instruction):
            forms = "\n  ".join(spec.forms())
            raise InstructionError(
                f"instruction={self.instruction!r} does not follow the Instruct format of"
                f" voice={self.voice!r} on {self.model} (Chinese, exactly as documented, final"
                f" 。 included); accepted forms:\n  {forms}",
                parameter="instruction",
            )

    def check_ssml(self) -> None:
        """Raise ``SSMLError`` when the voice is known not to support SSML."""
        voice = get_voice(self.voice)
        if voice is not None and not voice.ssml:
            raise SSMLError(_unsupported(voice, "ssml", "plain text"), parameter="text")

    @property
    def output_sample_rate(self) -> int:
        return self.sample_rate

    def replace(self, **changes: Any) -> SynthesisOptions:
        """A validated copy with ``changes`` applied.

        With "auto" word timestamps, a new voice or model decides them again.
        """
        if "word_timestamp_enabled" in changes:
            changes.setdefault("word_timestamps_auto", changes["word_timestamp_enabled"] == "auto")
        elif self.word_timestamps_auto and ("voice" in changes or "model" in changes):
            changes["word_timestamp_enabled"] = "auto"
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_audio_format(cls, audio_format: AudioFormat, **kwargs: Any) -> SynthesisOptions:
        """Options for an SDK ``AudioFormat`` (opus members carry their bit rate)."""
        if not isinstance(audio_format, AudioFormat):
            raise _fail("format", audio_format, "an AudioFormat member")
        if audio_format.wire_format == "opus":
            kwargs.setdefault("bit_rate", audio_format.bit_rate)
        return cls(format=audio_format.wire_format, sample_rate=audio_format.wire_sample_rate, **kwargs)


def service_sample_rate(requested: int) -> int:
    """The rate to ask the service for, to deliver ``requested`` Hz.

    The requested rate itself when the service supports it (no resampling),
    else the nearest supported rate above it (resample down), else the highest.
    """
    if isinstance(requested, bool) or not isinstance(requested, int) or not 1000 <= requested <= 192000:
        raise _fail("sample_rate", requested, "an int in [1000, 192000] Hz")
    for rate in SUPPORTED_SAMPLE_RATES:
        if rate >= requested:
            return rate
    return SUPPORTED_SAMPLE_RATES[-1]
