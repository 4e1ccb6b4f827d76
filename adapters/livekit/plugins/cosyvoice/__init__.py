"""CosyVoice (Alibaba DashScope) text-to-speech plugin for LiveKit Agents.

    from livekit.plugins import cosyvoice

    session = AgentSession(tts=cosyvoice.TTS(voice="longanyang", language="en"))

See docs/livekit.md. The protocol, connection pool, resampling and word
timing live in the ``cosyvoice_stream`` core; this package maps them onto
LiveKit's TTS interface.
"""

from livekit.agents import Plugin

from .log import logger
from .models import TTSLanguages, TTSModels, TTSVoices
from .tts import TTS, ChunkedStream, SynthesizeStream
from .version import __version__

__all__ = [
    "TTS",
    "ChunkedStream",
    "SynthesizeStream",
    "TTSLanguages",
    "TTSModels",
    "TTSVoices",
    "__version__",
]


class CosyVoicePlugin(Plugin):
    def __init__(self) -> None:
        super().__init__(__name__, __version__, __package__, logger)


# Plugins register on the main thread (LiveKit raises otherwise): import this
# package at the top of the agent's module, not inside a job.
Plugin.register_plugin(CosyVoicePlugin())

# Keep pdoc to the public names.
__pdoc__ = {name: False for name in dir() if name not in __all__ and not name.startswith("__")}
