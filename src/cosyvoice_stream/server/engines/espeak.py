"""The espeak engine: real speech from eSpeak NG (the ``espeakng-loader`` wheel).

The C library has global state, so every call is serialized by a lock and
runs in the engine's single worker thread, never on the event loop. eSpeak
produces int16 at 22050 Hz with word events (1-based character position,
time in ms); the audio is resampled to the requested rate with soxr.

eSpeak's output depends slightly on what it synthesized before (its pitch
"flutter" position is a static that is never reset), so identical requests
are answered from a bounded cache: the same text, voice, rate, pitch and
seed give the same bytes for the lifetime of the process.

Each CosyVoice voice gets its own eSpeak voice variant and base pitch, picked
deterministically from its catalogue traits (gender and age from the list's
own wording) and its id, so swapping voices is audible offline.
"""

from __future__ import annotations

import ctypes
import re
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...text import is_ideograph
from ...voices import get_voice
from ..model import BreakPart, Sentence, Synthesis, VoiceSettings, Word

NATIVE_RATE = 22050
BASE_WPM = 175

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PHONEMES = 0x100
_ENDPAUSE = 0x1000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_CACHE_BYTES = 64 * 1024 * 1024

#: language_hints value -> eSpeak voice.
LANGUAGE_VOICES: dict[str, str] = {
    "zh": "cmn",
    "en": "en-us",
    "fr": "fr",
    "de": "de",
    "ja": "ja",
    "ko": "ko",
    "ru": "ru",
    "yue": "yue",
    "id": "id",
}
#: eSpeak variants by the voice's gender (from the catalogue's traits).
FEMALE_VARIANTS: tuple[str, ...] = ("f1", "f2", "f3", "f4", "f5")
MALE_VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7")
_FEMALE_MARKS = ("女", "萝莉", "阿姨")
_MALE_MARKS = ("男", "爷", "猴哥", "高僧")
_CHILD_MARKS = ("童", "萌娃")
_PHONEME_ALPHABETS = frozenset({"x-espeak", "espeak"})


class EspeakUnavailableError(RuntimeError):
    """eSpeak NG cannot be loaded; the message says how to get it."""


class _Event(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    )


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


@dataclass(frozen=True)
class _Raw:
    samples: npt.NDArray[np.int16]  # at NATIVE_RATE
    words: list[tuple[int, int]]  # (0-based character position, ms)


class _Library:
    """The process-wide eSpeak NG instance (it cannot be instantiated twice)."""

    _instance: _Library | None = None
    _instance_lock = threading.Lock()

    @classmethod
    def get(cls) -> _Library:
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EspeakUnavailableError(
                "the espeak engine needs eSpeak NG from the espeakng-loader package:"
                " pip install 'cosyvoice-stream[server]' (or use engine='tone')"
            ) from exc
        try:
            lib: Any = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise EspeakUnavailableError(f"cannot load eSpeak NG from espeakng-loader: {exc}") from exc
        lib.espeak_Initialize.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int)
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = (_SynthCallback,)
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = (ctypes.c_char_p,)
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int)
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        )
        lib.espeak_Synth.restype = ctypes.c_int
        self._set_seed = getattr(lib, "espeak_ng_SetRandSeed", None)
        if self._set_seed is not None:
            self._set_seed.argtypes = (ctypes.c_long,)
            self._set_seed.restype = None
        self.lock = threading.Lock()
        with self.lock:
            rate = lib.espeak_Initialize(
                _AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT
            )
            if rate <= 0:
                raise EspeakUnavailableError(f"espeak_Initialize failed (returned {rate})")
            self.sample_rate = rate
            self._callback = _SynthCallback(self._on_synth)  # keep a reference
            lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._chunks: list[bytes] = []
        self._events: list[tuple[int, int]] = []
        self._voice: str | None = None
        self._cache: OrderedDict[tuple[object, ...], _Raw] = OrderedDict()
        self._cache_bytes = 0

    def _on_synth(self, wav: Any, count: int, events: Any) -> int:
        if count > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, count * 2))
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            if event.type == _EVENT_WORD:
                self._events.append((event.text_position - 1, event.audio_position))
            i += 1
        return 0

    def synth(
        self, text: str, voice: str, wpm: int, pitch: int, *, seed: int = 0, phonemes: bool = False
    ) -> _Raw:
        key = (text, voice, wpm, pitch, seed, phonemes)
        with self.lock:
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
                return cached
            raw = self._synth_locked(text, voice, wpm, pitch, seed, phonemes)
            self._cache[key] = raw
            self._cache_bytes += raw.samples.nbytes
            while self._cache_bytes > _CACHE_BYTES and len(self._cache) > 1:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.samples.nbytes
            return raw

    def _synth_locked(self, text: str, voice: str, wpm: int, pitch: int, seed: int, phonemes: bool) -> _Raw:
        data = text.replace("\x00", " ").encode("utf-8") + b"\x00"
        flags = _CHARS_UTF8 | _ENDPAUSE | (_PHONEMES if phonemes else 0)
        if voice != self._voice:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                self._lib.espeak_SetVoiceByName(b"en-us")
            self._voice = voice
        self._lib.espeak_SetParameter(_PARAM_RATE, wpm, 0)
        self._lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)
        if self._set_seed is not None:
            self._set_seed(seed)
        self._chunks, self._events = [], []
        result = self._lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, flags, None, None)
        chunks, events = self._chunks, self._events
        self._chunks, self._events = [], []
        if result != 0:
            raise RuntimeError(f"espeak_Synth failed (error {result})")
        samples = np.frombuffer(b"".join(chunks), dtype=np.int16).copy()
        samples.setflags(write=False)
        return _Raw(samples, events)


def _word_start(text: str, position: int) -> bool:
    if position == 0:
        return True
    before, here = text[position - 1], text[position]
    return before.isspace() or is_ideograph(before) or is_ideograph(here)


def has_cjk(text: str) -> bool:
    return any(is_ideograph(ch) for ch in text)


def _language_voice(voice: VoiceSettings, text: str) -> str:
    """language_hints[0] if given, else the voice's first language."""
    if voice.language:
        return LANGUAGE_VOICES.get(voice.language, "en-us")
    languages = voice.voice_languages or ("zh", "en")
    first = languages[0]
    if first in ("zh", "yue") and not has_cjk(text):
        first = "en"
    if first == "en":
        known = get_voice(voice.voice)
        if known is not None and any(v.startswith("en-GB") for v in known.language_variants):
            return "en"  # eSpeak's British English
    return LANGUAGE_VOICES.get(first, "en-us")


@dataclass(frozen=True)
class VoiceProfile:
    """How one CosyVoice voice sounds here: an eSpeak variant and a base pitch (0-100)."""

    variant: str
    pitch: int


def voice_profile(voice_id: str) -> VoiceProfile:
    """The variant and base pitch of a voice, the same on every run.

    The gender picks the variant pool (female, male, or both when the list
    gives no traits, as for the v1 voices), the id's CRC picks within it and
    nudges the pitch, and the age raises it for children, lowers it for the elderly.
    """
    known = get_voice(voice_id)
    traits = (known.traits or "") if known is not None else ""
    digest = zlib.crc32(voice_id.encode("utf-8"))
    female = any(mark in traits for mark in _FEMALE_MARKS)
    male = any(mark in traits for mark in _MALE_MARKS)
    if female and not male:
        pool = FEMALE_VARIANTS
    elif male and not female:
        pool = MALE_VARIANTS
    else:
        pool = FEMALE_VARIANTS + MALE_VARIANTS
    pitch = 50 + (digest >> 8) % 17 - 8
    ages = [int(n) for n in re.findall(r"\d+", (known.age or "") if known is not None else "")]
    if any(mark in traits for mark in _CHILD_MARKS) or (ages and max(ages) <= 15):
        pitch += 22
    elif ages and min(ages) >= 60:
        pitch -= 12
    return VoiceProfile(pool[digest % len(pool)], max(0, min(100, pitch)))


def espeak_voice_for(voice: VoiceSettings, text: str) -> str:
    """The eSpeak voice name: the language voice plus the CosyVoice voice's variant."""
    return f"{_language_voice(voice, text)}+{voice_profile(voice.voice).variant}"


class EspeakEngine:
    """Real speech; blocking, so the server runs it in a worker thread."""

    name = "espeak"
    blocking = True

    def __init__(self) -> None:
        self._lib = _Library.get()

    def synthesize(self, sentence: Sentence, voice: VoiceSettings) -> Synthesis:
        espeak_voice = espeak_voice_for(voice, sentence.text)
        wpm = max(80, min(450, round(BASE_WPM * voice.rate)))
        pitch = max(0, min(100, round(voice_profile(voice.voice).pitch * voice.pitch)))
        native = self._lib.sample_rate
        pieces: list[npt.NDArray[np.int16]] = []
        words: list[Word] = []
        offset = 0  # samples at the native rate
        for part in sentence.parts:
            if isinstance(part, BreakPart):
                silence = round(part.ms * native / 1000)
                pieces.append(np.zeros(silence, dtype=np.int16))
                offset += silence
                continue
            use_phonemes = bool(part.phonemes) and (part.alphabet or "").lower() in _PHONEME_ALPHABETS
            spoken = f"[[{part.phonemes}]]" if use_phonemes else part.spoken
            if not spoken.strip():
                continue
            raw = self._lib.synth(spoken, espeak_voice, wpm, pitch, seed=voice.seed, phonemes=use_phonemes)
            base_ms = offset * 1000.0 / native
            part_ms = len(raw.samples) * 1000.0 / native
            words.extend(self._words(sentence, part, spoken, raw, base_ms, part_ms, literal=not use_phonemes))
            pieces.append(raw.samples)
            offset += len(raw.samples)
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        return Synthesis(_finish(audio, native, voice), voice.sample_rate, words)

    @staticmethod
    def _words(
        sentence: Sentence,
        part: Any,
        spoken: str,
        raw: _Raw,
        base_ms: float,
        part_ms: float,
        *,
        literal: bool,
    ) -> list[Word]:
        events: list[tuple[int, int]] = []
        for position, ms in raw.words:
            if not 0 <= position < len(spoken) or (events and position <= events[-1][0]):
                continue
            if events and not _word_start(spoken, position):
                continue  # e.g. the ".14" of "3.14": part of the previous word
            events.append((position, ms))
        words: list[Word] = []
        for k, (position, ms) in enumerate(events):
            next_position = events[k + 1][0] if k + 1 < len(events) else len(spoken)
            piece = spoken[position:next_position].rstrip()
            if not piece:
                continue
            begin_time = base_ms + ms
            end_time = base_ms + events[k + 1][1] if k + 1 < len(events) else base_ms + part_ms
            end_time = max(end_time, begin_time)
            if literal and part.literal:
                begin, end = part.start + position, part.start + position + len(piece)
                shown = sentence.text[begin:end]
            else:
                begin, end, shown = part.start, part.end, piece
            words.append(Word(shown, begin, end, begin_time, end_time))
        return words

    def close(self) -> None:
        return None


def _finish(audio: npt.NDArray[np.int16], native: int, voice: VoiceSettings) -> npt.NDArray[np.int16]:
    """Resample to the requested rate and apply the volume (gain volume/50, clipped)."""
    gain = voice.volume / 50.0
    if native == voice.sample_rate and gain == 1.0:
        return audio
    signal = audio.astype(np.float32)
    if native != voice.sample_rate and len(signal):
        import soxr

        signal = soxr.resample(signal, native, voice.sample_rate)
    signal = signal * gain
    return np.clip(np.rint(signal), -32768, 32767).astype(np.int16)
