"""Driver: ``pipecat-dashscope`` 0.2.0 (``DashScopeTTSV2Service``), in its own env.

pipecat-dashscope 0.2.0 imports ``_NotGiven`` from ``pipecat.services.settings``,
which pipecat-ai 1.8.0 and later no longer have; its environment therefore
holds pipecat-ai 1.7.0, the newest release it imports on. The service calls
the SDK's blocking ``SpeechSynthesizer.call()`` in a thread per sentence and
pushes the audio when the call returns; the SDK reads its endpoint from
``dashscope.base_websocket_api_url``.
"""

from __future__ import annotations

from _common import API_KEY, MODEL, VOICE
from _pipecat import Service, run


def factory(s: dict) -> Service:
    import dashscope
    from pipecat_dashscope import DashScopeTTSV2Service

    def make_tts(url: str, rate: int):
        dashscope.base_websocket_api_url = url
        return DashScopeTTSV2Service(
            api_key=API_KEY,
            sample_rate=rate,
            settings=DashScopeTTSV2Service.Settings(model=MODEL, voice=VOICE),
        )

    return Service(make_tts, s["expected_bytes"])


if __name__ == "__main__":
    run(factory)
