"""Names accepted by ``cosyvoice.TTS``: models, system voices, language hints.

The service also accepts voices that are not listed here (cloned voices,
new system voices), so every parameter typed with these literals also takes a
plain ``str``. The lists mirror ``cosyvoice_stream.voices`` (a test keeps them
in sync).
"""

from __future__ import annotations

from typing import Literal

from cosyvoice_stream.voices import DEFAULT_MODEL, DEFAULT_VOICE

TTSModels = Literal["cosyvoice-v3-flash", "cosyvoice-v3-plus", "cosyvoice-v2", "cosyvoice-v1"]

#: System voices of the cosyvoice-v3 models (cosyvoice-v3-flash, cosyvoice-v3-plus).
TTSVoicesV3 = Literal[
    "longanyang",
    "longanhuan",
    "longhuhu_v3",
    "longyingjing_v3",
    "longanshuo_v3",
    "longxiaochun_v3",
]
#: System voices of cosyvoice-v2.
TTSVoicesV2 = Literal[
    "longxiaochun_v2",
    "longxiaoxia_v2",
    "longwan_v2",
    "longcheng_v2",
    "longhua_v2",
    "loongstella_v2",
    "loongbella_v2",
]
#: System voices of cosyvoice-v1 (no word timestamps).
TTSVoicesV1 = Literal["longxiaochun", "longwan", "longcheng", "loongstella"]
TTSVoices = Literal[TTSVoicesV3, TTSVoicesV2, TTSVoicesV1]

#: Language hints the service understands (``language=`` also takes BCP-47 tags such as "en-US").
TTSLanguages = Literal["zh", "en", "fr", "de", "ja", "ko", "ru"]

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_VOICE",
    "TTSLanguages",
    "TTSModels",
    "TTSVoices",
    "TTSVoicesV1",
    "TTSVoicesV2",
    "TTSVoicesV3",
]
