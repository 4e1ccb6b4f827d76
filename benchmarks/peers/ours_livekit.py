"""Driver: our LiveKit plugin (``livekit.plugins.cosyvoice.TTS``), in the project venv."""

from __future__ import annotations

from _common import API_KEY, MODEL, VOICE
from _livekit import Plugin, run


def factory() -> Plugin:
    import json
    import sys

    from livekit.plugins import cosyvoice

    s = json.loads(sys.argv[1])
    words = s.get("word_timestamps", True)

    def make_tts(url: str, rate: int):
        return cosyvoice.TTS(
            api_key=API_KEY,
            base_url=url,
            model=MODEL,
            voice=VOICE,
            sample_rate=rate,
            word_timestamps=words,
            early_flush=s.get("early_flush", True),
        )

    return Plugin(make_tts, has_synthesize=True)


if __name__ == "__main__":
    run(factory)
