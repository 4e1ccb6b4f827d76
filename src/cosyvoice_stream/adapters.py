"""Framework adapters, discovered through the ``cosyvoice_stream.adapters`` entry points.

Each entry point names a factory ``create_tts(config: Mapping) -> TTS`` of one
framework. ``create_tts()`` here builds a framework's TTS from a plain mapping
or from ``COSYVOICE_*`` environment variables, so voices are swapped by
configuration, not code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from .aio.connection import Timeouts
from .errors import InvalidParameterError

ENTRY_POINT_GROUP = "cosyvoice_stream.adapters"
INSTALL_HINTS = {
    "pipecat": "pip install 'cosyvoice-stream[pipecat]'",
    "livekit": "pip install 'cosyvoice-stream[livekit]'",
}


def boolean(raw: str) -> bool:
    """A boolean setting: 1/true/yes/on or 0/false/no/off (any case)."""
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


#: Environment variable -> (config key, converter).
ENV_SETTINGS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "COSYVOICE_FRAMEWORK": ("framework", str),
    "COSYVOICE_MODEL": ("model", str),
    "COSYVOICE_VOICE": ("voice", str),
    "COSYVOICE_SAMPLE_RATE": ("sample_rate", int),
    "COSYVOICE_SPEECH_RATE": ("speech_rate", float),
    "COSYVOICE_PITCH_RATE": ("pitch_rate", float),
    "COSYVOICE_VOLUME": ("volume", int),
    "COSYVOICE_SEED": ("seed", int),
    "COSYVOICE_LANGUAGE": ("language", str),
    "COSYVOICE_INSTRUCTION": ("instruction", str),
    "COSYVOICE_URL": ("url", str),
    "COSYVOICE_EARLY_FLUSH": ("early_flush", boolean),
}


class AdapterUnavailableError(InvalidParameterError):
    """The framework of an adapter is not installed (or the adapter is unknown)."""


@dataclass(frozen=True)
class AdapterInfo:
    """One registered adapter and whether it can be loaded here."""

    name: str
    target: str
    available: bool
    install_hint: str
    error: str | None = None


def check_config(config: object, known_keys: frozenset[str], *, what: str) -> dict[str, Any]:
    """A copy of an adapter's config mapping; unknown keys are refused by name.

    ``timeouts`` given as a mapping becomes a ``Timeouts``. Shared by every
    adapter factory so all of them read configuration alike.
    """
    if not isinstance(config, Mapping):
        raise InvalidParameterError(
            f"config must be a mapping, got {type(config).__name__}", parameter="config"
        )
    values = dict(config)
    unknown = sorted(str(key) for key in values if key not in known_keys)
    if unknown:
        raise InvalidParameterError(
            f"unknown {what} option{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)};"
            f" expected some of: {', '.join(sorted(known_keys))}",
            parameter=unknown[0],
        )
    timeouts = values.get("timeouts")
    if isinstance(timeouts, Mapping):
        fields = sorted(Timeouts.__dataclass_fields__)
        wrong = sorted(str(key) for key in timeouts if key not in fields)
        if wrong:
            raise InvalidParameterError(
                f"unknown timeouts option(s): {', '.join(wrong)}; expected some of: {', '.join(fields)}",
                parameter="timeouts",
            )
        values["timeouts"] = Timeouts(**timeouts)
    return values


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_adapters() -> list[AdapterInfo]:
    """Every registered adapter; those whose framework is missing say how to install it."""
    infos = []
    for name, ep in sorted(_entry_points().items()):
        hint = INSTALL_HINTS.get(name, f"pip install 'cosyvoice-stream[{name}]'")
        try:
            ep.load()
        except ImportError as exc:
            infos.append(AdapterInfo(name, ep.value, False, hint, f"{type(exc).__name__}: {exc}"))
        else:
            infos.append(AdapterInfo(name, ep.value, True, hint))
    return infos


def config_from_env(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The adapter settings found in ``COSYVOICE_*`` variables, converted and checked."""
    env = os.environ if env is None else env
    config: dict[str, Any] = {}
    for variable, (key, convert) in ENV_SETTINGS.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        try:
            config[key] = convert(raw)
        except ValueError:
            raise InvalidParameterError(
                f"{variable}={raw!r} is invalid: expected {convert.__name__}", parameter=variable
            ) from None
    return config


def create_tts(
    config: Mapping[str, Any] | None = None,
    *,
    framework: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Build a framework's CosyVoice TTS from ``config`` over ``COSYVOICE_*`` variables.

    ``{"framework": "pipecat", "model": "cosyvoice-v3-flash", "voice": "longanyang"}``
    gives a ``CosyVoiceTTSService``; ``"livekit"`` gives ``livekit.plugins.cosyvoice.TTS``.
    """
    merged = config_from_env(env)
    merged.update(config or {})
    name = framework or merged.pop("framework", None)
    merged.pop("framework", None)
    if not name:
        raise InvalidParameterError(
            "no framework: pass framework=, a 'framework' key or COSYVOICE_FRAMEWORK"
            f" (one of {', '.join(sorted(_entry_points())) or 'none installed'})",
            parameter="framework",
        )
    points = _entry_points()
    if name not in points:
        raise AdapterUnavailableError(
            f"framework={name!r} has no adapter; registered: {', '.join(sorted(points)) or 'none'}",
            parameter="framework",
        )
    try:
        factory = points[name].load()
    except ImportError as exc:
        hint = INSTALL_HINTS.get(name, f"pip install 'cosyvoice-stream[{name}]'")
        raise AdapterUnavailableError(
            f"the {name} adapter needs its framework, which is not installed ({exc}); run: {hint}",
            parameter="framework",
        ) from None
    return factory(merged)
