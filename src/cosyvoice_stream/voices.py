"""The CosyVoice voice catalogue: models, system voices, and what each voice supports.

The catalogue is the official CosyVoice voice list (help.aliyun.com
"CosyVoice音色列表"), kept as data in ``data/cosyvoice-voices.json``: a verbatim
copy of the project's compiled file, with its compile date, sources and usage
rules (a test keeps the two identical). Nothing here is retyped by hand.

The service also accepts voices the catalogue does not list (voices added
after it was compiled, cloned voices ``<model>-<prefix>-<id>``); the client
passes those through and lets the service decide. For listed voices the
catalogue lets the client refuse what is known to fail (a voice of another
model, a feature the voice lacks, a malformed instruction) before any
network round trip, lets the embedded server speak only real voices, and
feeds ``cosyvoice-stream voices``.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

#: The packaged catalogue file (package ``cosyvoice_stream.data``).
CATALOGUE_FILE = "cosyvoice-voices.json"

DEFAULT_MODEL = "cosyvoice-v3-flash"
DEFAULT_VOICE = "longanyang"
#: Models that accept ``instruction`` at all (the seed: v3-flash and v3-plus only).
INSTRUCTION_MODELS: frozenset[str] = frozenset({"cosyvoice-v3-flash", "cosyvoice-v3-plus"})
#: Models with no system voices: the voice list has no table for them and the
#: model pages say they speak cloned or designed voices only.
CLONE_ONLY_MODELS: tuple[str, ...] = ("cosyvoice-v3.5-flash", "cosyvoice-v3.5-plus")

Feature = Literal["ssml", "instruct", "timestamps"]
FEATURES: tuple[Feature, ...] = ("ssml", "instruct", "timestamps")
#: How each feature is named in messages (the request parameter it stands for).
FEATURE_NAMES: Mapping[Feature, str] = MappingProxyType(
    {
        "ssml": "SSML (enable_ssml)",
        "instruct": "Instruct (instruction)",
        "timestamps": "word timestamps (word_timestamp_enabled)",
    }
)

_EMOTION_PLACEHOLDER = "情感值"
_PLACEHOLDER = re.compile(r"<([^<>]+)>")


class CatalogueError(ValueError):
    """The catalogue file is missing a field or has a value of the wrong type."""


@dataclass(frozen=True)
class InstructTemplate:
    """One documented Instruct format, such as ``你说话的情感是<情感值>。``.

    ``values`` are the allowed values of its non-emotion placeholder (scene,
    role, identity or dialect); empty when the format has only the emotion.
    """

    kind: str
    format: str
    example: str
    values: tuple[str, ...] = ()

    def pattern(self, emotions: tuple[str, ...]) -> re.Pattern[str]:
        """A regex matching exactly the instructions this template allows."""
        pieces: list[str] = []
        position = 0
        for match in _PLACEHOLDER.finditer(self.format):
            pieces.append(re.escape(self.format[position : match.start()]))
            allowed = emotions if match.group(1) == _EMOTION_PLACEHOLDER else self.values
            if allowed:
                pieces.append("(?:" + "|".join(re.escape(v) for v in allowed) + ")")
            else:  # the page gives no list: any text without the format's punctuation
                pieces.append("[^，。,.]+")
            position = match.end()
        pieces.append(re.escape(self.format[position:]))
        return re.compile("".join(pieces))


@dataclass(frozen=True)
class InstructSpec:
    """The Instruct rule of one voice on one model: its formats and allowed values."""

    rule: str
    emotions: tuple[str, ...]
    templates: tuple[InstructTemplate, ...]

    def accepts(self, instruction: str) -> bool:
        """Whether ``instruction`` follows one of the formats exactly (punctuation included)."""
        return any(t.pattern(self.emotions).fullmatch(instruction) for t in self.templates)

    def forms(self) -> list[str]:
        """The accepted forms, one line each, with the allowed values of every placeholder."""
        lines: list[str] = []
        for template in self.templates:
            allowed: list[str] = []
            for name in _PLACEHOLDER.findall(template.format):
                values = self.emotions if name == _EMOTION_PLACEHOLDER else template.values
                if values:
                    allowed.append(f"<{name}> one of {', '.join(values)}")
            detail = f" ({'; '.join(allowed)})" if allowed else ""
            lines.append(f"{template.format}{detail}, e.g. {self._example(template)}")
        return lines

    def _example(self, template: InstructTemplate) -> str:
        """The page's example, or one built from the first allowed values when the
        page's own example breaks its value list (longanhuan on v3-plus does)."""
        if template.pattern(self.emotions).fullmatch(template.example):
            return template.example

        def first(match: re.Match[str]) -> str:
            values = self.emotions if match.group(1) == _EMOTION_PLACEHOLDER else template.values
            return values[0] if values else match.group(0)

        return _PLACEHOLDER.sub(first, template.format)


@dataclass(frozen=True)
class Rule:
    """A usage rule of the voice list, with its sources and whether it is official."""

    rule: str
    status: str
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Voice:
    """A system voice and what it supports, exactly as the official list gives it.

    ``models``: the models that accept the voice. ``ssml`` / ``instruct`` /
    ``word_timestamps``: the list's 支持 (True) / 不支持 (False).
    ``instruct_spec``: the Instruct formats, keyed by model. ``traits``,
    ``age``, ``scenario``: the list's own (Chinese) wording, or None.
    """

    id: str
    models: tuple[str, ...]
    name: str
    traits: str | None
    age: str | None
    languages: tuple[str, ...]
    languages_raw: str
    dialects: tuple[str, ...]
    language_variants: tuple[str, ...]
    scenario: str | None
    ssml: bool
    instruct: bool
    word_timestamps: bool
    instruct_spec: Mapping[str, InstructSpec]
    region_note: str | None
    source: str

    def supports(self, feature: str) -> bool:
        """Whether the voice supports ``"ssml"``, ``"instruct"`` or ``"timestamps"``."""
        if feature == "ssml":
            return self.ssml
        if feature == "instruct":
            return self.instruct
        if feature == "timestamps":
            return self.word_timestamps
        raise ValueError(f"unknown feature {feature!r}: expected one of {', '.join(FEATURES)}")

    @property
    def description(self) -> str:
        """A one-line description: the traits, else the scenario."""
        return self.traits or self.scenario or ""

    def to_dict(self) -> dict[str, Any]:
        """The voice as JSON-ready data (``cosyvoice-stream voices --json``)."""
        return {
            "voice": self.id,
            "models": list(self.models),
            "name": self.name,
            "traits": self.traits,
            "age": self.age,
            "languages": list(self.languages),
            "languages_raw": self.languages_raw,
            "dialects": list(self.dialects),
            "language_variants": list(self.language_variants),
            "scenario": self.scenario,
            "ssml": self.ssml,
            "instruct": self.instruct,
            "timestamps": self.word_timestamps,
            "instruct_forms": {model: spec.forms() for model, spec in self.instruct_spec.items()},
            "region_note": self.region_note,
        }


@dataclass(frozen=True)
class Catalogue:
    """The whole voice list: when it was compiled, from where, its rules and its voices."""

    compiled: datetime.date
    sources: tuple[str, ...]
    notes: str
    rules: tuple[Rule, ...]
    voices: tuple[Voice, ...]
    _by_id: Mapping[str, Voice] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", MappingProxyType({v.id: v for v in self.voices}))

    @property
    def models(self) -> tuple[str, ...]:
        """The models with system voices, in the list's order."""
        seen: dict[str, None] = {}
        for voice in self.voices:
            for model in voice.models:
                seen.setdefault(model)
        return tuple(seen)

    def get(self, voice: str) -> Voice | None:
        """The voice with this id, or None when the list does not have it."""
        return self._by_id.get(voice)

    def for_model(self, model: str) -> tuple[Voice, ...]:
        """The system voices ``model`` accepts (none for an unknown model)."""
        return tuple(v for v in self.voices if model in v.models)

    def __iter__(self) -> Iterator[Voice]:
        return iter(self.voices)

    def __len__(self) -> int:
        return len(self.voices)


# -- loading -----------------------------------------------------------------


def _str(record: Mapping[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if not isinstance(value, str):
        raise CatalogueError(f"{where}: {key!r} must be a string, got {value!r}")
    return value


def _opt_str(record: Mapping[str, Any], key: str, where: str) -> str | None:
    value = record.get(key)
    if value is not None and not isinstance(value, str):
        raise CatalogueError(f"{where}: {key!r} must be a string or null, got {value!r}")
    return value


def _strs(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CatalogueError(f"{where}: {key!r} must be a list of strings, got {value!r}")
    return tuple(value)


def _flag(record: Mapping[str, Any], key: str, where: str) -> bool:
    value = record.get(key)
    if not isinstance(value, bool):
        raise CatalogueError(f"{where}: {key!r} must be true or false, got {value!r}")
    return value


def _spec(raw: Any, where: str) -> InstructSpec:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("templates"), list):
        raise CatalogueError(f"{where}: an instruct_spec needs a list of templates")
    templates = []
    for item in raw["templates"]:
        if not isinstance(item, Mapping):
            raise CatalogueError(f"{where}: an Instruct template must be an object")
        templates.append(
            InstructTemplate(
                kind=_str(item, "kind", where),
                format=_str(item, "format", where),
                example=_str(item, "example", where),
                values=_strs(item.get("values"), "values", where),
            )
        )
    return InstructSpec(
        rule=_str(raw, "rule", where),
        emotions=_strs(raw.get("emotions"), "emotions", where),
        templates=tuple(templates),
    )


def _voice(record: Any) -> Voice:
    if not isinstance(record, Mapping):
        raise CatalogueError(f"a voice record must be an object, got {record!r}")
    voice_id = _str(record, "voice", "voice record")
    where = f"voice {voice_id!r}"
    models = _strs(record.get("model"), "model", where)
    if not models:
        raise CatalogueError(f"{where}: 'model' is empty")
    raw_spec = record.get("instruct_spec") or {}
    if not isinstance(raw_spec, Mapping):
        raise CatalogueError(f"{where}: 'instruct_spec' must be an object keyed by model")
    return Voice(
        id=voice_id,
        models=models,
        name=_str(record, "name", where),
        traits=_opt_str(record, "traits", where),
        age=_opt_str(record, "age", where),
        languages=_strs(record.get("languages"), "languages", where),
        languages_raw=_str(record, "languages_raw", where),
        dialects=_strs(record.get("dialects"), "dialects", where),
        language_variants=_strs(record.get("language_variants"), "language_variants", where),
        scenario=_opt_str(record, "scenario", where),
        ssml=_flag(record, "ssml", where),
        instruct=_flag(record, "instruct", where),
        word_timestamps=_flag(record, "timestamps", where),
        instruct_spec=MappingProxyType(
            {str(model): _spec(spec, f"{where} on {model}") for model, spec in raw_spec.items()}
        ),
        region_note=_opt_str(record, "region_note", where),
        source=_str(record, "source", where),
    )


def parse_catalogue(data: Any) -> Catalogue:
    """A ``Catalogue`` from the decoded JSON of the voice list; ``CatalogueError`` if malformed."""
    if not isinstance(data, Mapping) or not isinstance(data.get("voices"), list):
        raise CatalogueError("the catalogue must be an object with a 'voices' list")
    try:
        compiled = datetime.date.fromisoformat(_str(data, "compiled", "catalogue"))
    except ValueError as exc:
        raise CatalogueError(f"catalogue: 'compiled' is not an ISO date: {exc}") from None
    rules = []
    for item in data.get("rules") or []:
        if not isinstance(item, Mapping):
            raise CatalogueError("catalogue: a rule must be an object")
        rules.append(
            Rule(
                rule=_str(item, "rule", "rule"),
                status=_str(item, "status", "rule"),
                sources=_strs(item.get("source"), "source", "rule"),
            )
        )
    voices = tuple(_voice(record) for record in data["voices"])
    ids = [v.id for v in voices]
    if len(set(ids)) != len(ids):
        raise CatalogueError("catalogue: a voice id appears twice")
    return Catalogue(
        compiled=compiled,
        sources=_strs(data.get("sources"), "sources", "catalogue"),
        notes=_str(data, "notes", "catalogue"),
        rules=tuple(rules),
        voices=voices,
    )


def load_catalogue(path: str | Path | None = None) -> Catalogue:
    """Load the voice list from ``path``, or the copy packaged with this library."""
    if path is None:
        text = (
            resources.files("cosyvoice_stream").joinpath("data").joinpath(CATALOGUE_FILE).read_text("utf-8")
        )
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_catalogue(json.loads(text))


CATALOGUE: Catalogue = load_catalogue()
VOICES: tuple[Voice, ...] = CATALOGUE.voices
VOICES_BY_ID: Mapping[str, Voice] = CATALOGUE._by_id
#: Models with system voices, in the list's order (v3-flash, v3-plus, v2, v1).
MODELS: tuple[str, ...] = CATALOGUE.models
#: Every model the client knows: those with system voices, then the clone-only ones.
KNOWN_MODELS: tuple[str, ...] = MODELS + CLONE_ONLY_MODELS
#: Short names for the command line: ``v3-flash`` -> ``cosyvoice-v3-flash``.
MODEL_ALIASES: Mapping[str, str] = MappingProxyType(
    {model.removeprefix("cosyvoice-"): model for model in KNOWN_MODELS}
)


def get_voice(voice: str) -> Voice | None:
    """The catalogue entry of ``voice``, or None for a voice the list does not have."""
    return VOICES_BY_ID.get(voice)


def voices_for_model(model: str) -> list[Voice]:
    """The system voices ``model`` accepts (an alias such as ``v2`` works too)."""
    return list(CATALOGUE.for_model(resolve_model(model) or model))


def resolve_model(name: str) -> str | None:
    """The full model name for a model or its alias (``v3-flash``), or None if unknown."""
    name = name.strip().lower()
    if name in KNOWN_MODELS:
        return name
    return MODEL_ALIASES.get(name)


def cloned_voice_target(voice: str) -> str | None:
    """The target model a cloned or designed voice id names, if it has that form.

    Cloned ids are ``<target_model>-<prefix>-<id>`` (designed voices carry a
    ``-vd-`` marker after the model); the synthesis model must be the target.
    """
    for model in sorted(KNOWN_MODELS, key=len, reverse=True):  # v3.5-plus before v3-...
        if voice.startswith(model + "-") and len(voice) > len(model) + 1:
            return model
    return None


def voice_models(voice: str) -> tuple[str, ...] | None:
    """The models a voice works with, when known: its catalogue entry, or the
    target model of a cloned id; None for a voice nobody here knows."""
    known = VOICES_BY_ID.get(voice)
    if known is not None:
        return known.models
    target = cloned_voice_target(voice)
    return (target,) if target is not None else None


def update_catalogue(source: str | Path) -> Path:
    """Copy a newer compiled voice list into this (source-checkout) package.

    The file is validated first, so a malformed list never replaces the packaged
    one; it is copied byte for byte, so the test comparing the two stays exact.
    Returns the packaged file's path. Run as ``python -m cosyvoice_stream.voices_cli SOURCE``.
    """
    data = Path(source).read_bytes()
    parse_catalogue(json.loads(data.decode("utf-8")))
    target = Path(__file__).resolve().parent / "data" / CATALOGUE_FILE
    target.write_bytes(data)
    return target
