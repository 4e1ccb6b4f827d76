"""Known models and system voices, with what each supports.

The service accepts voices not listed here (cloned voices, new system
voices); this table only lets the client refuse combinations that are known
to fail (a voice of another model generation, server code 418) before any
network round trip, and feeds ``cosyvoice-stream voices``.
"""

from __future__ import annotations

from dataclasses import dataclass

MODELS: tuple[str, ...] = ("cosyvoice-v3-flash", "cosyvoice-v3-plus", "cosyvoice-v2", "cosyvoice-v1")
DEFAULT_MODEL = "cosyvoice-v3-flash"
DEFAULT_VOICE = "longanyang"
#: Models that accept ``instruction`` (seed: v3-flash and v3-plus only).
INSTRUCTION_MODELS: frozenset[str] = frozenset({"cosyvoice-v3-flash", "cosyvoice-v3-plus"})


@dataclass(frozen=True)
class Voice:
    """A system voice: its id, the model generation it belongs to, and features."""

    id: str
    generation: str  # "v3", "v2" or "v1"
    languages: tuple[str, ...]
    description: str
    ssml: bool = True
    word_timestamps: bool = True
    instruction: bool = False


VOICES: tuple[Voice, ...] = (
    Voice("longanyang", "v3", ("zh", "en"), "young male, bright and warm", instruction=True),
    Voice("longanhuan", "v3", ("zh", "en"), "young female, lively", instruction=True),
    Voice("longhuhu_v3", "v3", ("zh", "en"), "child, innocent"),
    Voice("longyingjing_v3", "v3", ("zh", "en"), "female, calm narrator"),
    Voice("longanshuo_v3", "v3", ("zh", "en"), "male, news anchor"),
    Voice("longxiaochun_v3", "v3", ("zh", "en"), "female, intellectual"),
    Voice("longxiaochun_v2", "v2", ("zh", "en"), "female, intellectual"),
    Voice("longxiaoxia_v2", "v2", ("zh",), "female, calm"),
    Voice("longwan_v2", "v2", ("zh",), "female, gentle"),
    Voice("longcheng_v2", "v2", ("zh",), "male, sunny"),
    Voice("longhua_v2", "v2", ("zh",), "female child, lively"),
    Voice("loongstella_v2", "v2", ("zh", "en"), "female, confident"),
    Voice("loongbella_v2", "v2", ("zh",), "female, news anchor"),
    Voice("longxiaochun", "v1", ("zh", "en"), "female, intellectual", word_timestamps=False),
    Voice("longwan", "v1", ("zh",), "female, gentle", word_timestamps=False),
    Voice("longcheng", "v1", ("zh",), "male, sunny", word_timestamps=False),
    Voice("loongstella", "v1", ("zh", "en"), "female, confident", word_timestamps=False),
)
VOICES_BY_ID: dict[str, Voice] = {v.id: v for v in VOICES}


def model_generation(model: str) -> str | None:
    """The generation ("v3", "v2", "v1") of a model name, or None if unknown."""
    for generation in ("v3", "v2", "v1"):
        if model.startswith(f"cosyvoice-{generation}"):
            return generation
    return None


def voice_generation(voice: str) -> str | None:
    """The generation a voice belongs to, if known.

    System voices come from the table; cloned voice ids start with the model
    they were enrolled for (``cosyvoice-v3-flash-myprefix-...``).
    """
    known = VOICES_BY_ID.get(voice)
    if known is not None:
        return known.generation
    if voice.startswith("cosyvoice-"):
        return model_generation(voice)
    return None


def voices_for_model(model: str) -> list[Voice]:
    """The known system voices usable with ``model``."""
    generation = model_generation(model)
    return [v for v in VOICES if v.generation == generation]
