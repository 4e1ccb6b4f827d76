"""Driver: ``livekit-plugins-aliyun`` 1.8.1.post0 (``livekit.plugins.aliyun.TTS``), in its own env.

Its endpoint is hard-coded (``TTSOptions.get_ws_url``); it is pointed at the
benchmark's proxy by replacing that method. It has no ``synthesize()``.
"""

from __future__ import annotations

from _common import API_KEY, MODEL, VOICE
from _livekit import Plugin, run


def factory() -> Plugin:
    import aiohttp
    from livekit.plugins import aliyun
    from livekit.plugins.aliyun import tts as aliyun_tts

    sessions: dict[int, aiohttp.ClientSession] = {}

    def make_tts(url: str, rate: int):
        aliyun_tts.TTSOptions.get_ws_url = lambda self: url
        session = aiohttp.ClientSession()
        # volume=50 as every other client: the tone engine's per-task amplitude (the stale-audio tag)
        # is tag * volume / 50, and at its default 100 it clips at 32767 once the server's tags pass 16383.
        tts = aliyun.TTS(
            api_key=API_KEY, model=MODEL, voice=VOICE, sample_rate=rate, volume=50, http_session=session
        )
        sessions[id(tts)] = session
        return tts

    async def close_session(tts) -> None:
        session = sessions.pop(id(tts), None)
        if session is not None:
            await session.close()

    return Plugin(make_tts, has_synthesize=False, aclose_tts=close_session)


if __name__ == "__main__":
    run(factory)
