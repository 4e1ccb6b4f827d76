"""Build the plugin from a plain mapping (the ``cosyvoice_stream.adapters`` entry point).

    from livekit.plugins.cosyvoice.factory import create_tts
    tts = create_tts({"voice": "longanyang", "sample_rate": 16000, "language": "en"})

Keys are the keyword arguments of ``cosyvoice.TTS`` (``url`` is accepted as
an alias of ``base_url``, the name ``cosyvoice_stream.adapters`` uses);
``timeouts`` may be a mapping of ``cosyvoice_stream.Timeouts`` fields.
Unknown keys are refused with an error that names them.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from cosyvoice_stream import InvalidParameterError
from cosyvoice_stream.adapters import check_config

from .tts import TTS

#: The keys ``create_tts`` accepts: the keyword arguments of ``TTS``, and their aliases.
ALIASES: dict[str, str] = {"url": "base_url"}
CONFIG_KEYS: frozenset[str] = frozenset(
    name
    for name, parameter in inspect.signature(TTS.__init__).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY
) | frozenset(ALIASES)


def create_tts(config: Mapping[str, Any]) -> TTS:
    """A ``cosyvoice.TTS`` from ``config`` (validated; unknown keys raise ``ValueError``)."""
    kwargs = check_config(config, CONFIG_KEYS, what="LiveKit CosyVoice")
    for alias, name in ALIASES.items():
        if alias in kwargs:
            if name in kwargs:
                raise InvalidParameterError(
                    f"pass {name} or {alias}, not both (they are the same option)", parameter=name
                )
            kwargs[name] = kwargs.pop(alias)
    return TTS(**kwargs)
