"""Driver: our Pipecat service (``pipecat_cosyvoice.CosyVoiceTTSService``, pipecat-ai 1.14), project venv."""

from __future__ import annotations

from _common import API_KEY, MODEL, VOICE
from _pipecat import Service, run


def factory(s: dict) -> Service:
    from pipecat_cosyvoice import CosyVoiceTTSService

    words = s.get("word_timestamps", True)

    def make_tts(url: str, rate: int):
        return CosyVoiceTTSService(
            api_key=API_KEY,
            url=url,
            model=MODEL,
            voice=VOICE,
            word_timestamps=words,
            early_flush=s.get("early_flush", True),
        )

    return Service(make_tts, s["expected_bytes"])


if __name__ == "__main__":
    run(factory)
