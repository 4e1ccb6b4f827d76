"""CosyVoice TTS service for Pipecat.

```python
from pipecat.transcriptions.language import Language
from pipecat_cosyvoice import CosyVoiceTTSService

tts = CosyVoiceTTSService(
    voice="longanyang",  # DASHSCOPE_API_KEY from the environment
    settings=CosyVoiceTTSService.Settings(speech_rate=1.1, language=Language.EN),
)
```
"""

from cosyvoice_stream import __version__

from .factory import create_tts
from .tts import CosyVoiceTTSService, CosyVoiceTTSSettings, language_to_cosyvoice_language

__all__ = [
    "CosyVoiceTTSService",
    "CosyVoiceTTSSettings",
    "__version__",
    "create_tts",
    "language_to_cosyvoice_language",
]
