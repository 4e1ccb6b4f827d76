"""LiveKit's StreamAdapter and FallbackAdapter accept the plugin."""

from __future__ import annotations

import pytest
from livekit.agents import tts
from livekit_helpers import run_stream, run_synthesize, spoken_tasks, tags_of, tone_duration

from cosyvoice_stream.server import EmbeddedServer


async def test_stream_adapter_synthesizes_sentence_by_sentence(server: EmbeddedServer, make_tts) -> None:
    plugin = make_tts()
    adapter = tts.StreamAdapter(tts=plugin)
    try:
        assert (adapter.model, adapter.provider, adapter.sample_rate) == (plugin.model, "DashScope", 24000)
        out = await run_stream(adapter, ["Hello there. ", "今天天气很好。", "Bye now."])
    finally:
        await adapter.aclose()

    tasks = spoken_tasks(server)
    # The adapter's blingfire tokenizer hands whole sentences to plugin.synthesize(): one
    # task, one message each (blingfire may group short sentences).
    assert len(tasks) >= 2 and all(len(t.texts) == 1 for t in tasks)
    assert "".join(t.texts[0] for t in tasks).replace(" ", "") == "Hellothere.今天天气很好。Byenow."
    assert out.duration == pytest.approx(tone_duration(2 + 6 + 2), abs=0.02)
    assert tags_of(out.frames) == {t.tag for t in tasks}
    assert out.events[-1].is_final


async def test_fallback_adapter_streams_with_the_plugin(server: EmbeddedServer, make_tts) -> None:
    adapter = tts.FallbackAdapter([make_tts(), make_tts(voice="longanhuan")])
    try:
        assert adapter.capabilities.streaming and adapter.capabilities.aligned_transcript
        out = await run_stream(adapter, ["Hello ", "world."])
        chunked = await run_synthesize(adapter, "Once more.")
    finally:
        await adapter.aclose()
    first, second = spoken_tasks(server)
    assert first.parameters["voice"] == "longanyang" and second.parameters["voice"] == "longanyang"
    assert out.duration == pytest.approx(tone_duration(2), abs=0.01)
    assert "".join(out.transcripts) == "Hello world."
    assert chunked.duration == pytest.approx(tone_duration(2), abs=0.01)


async def test_fallback_adapter_moves_on_when_the_plugin_fails(start_server, make_tts) -> None:
    guarded = await start_server(api_keys={"right-key"})
    failing = make_tts(base_url=guarded.url, api_key="wrong-key")
    working = make_tts()
    adapter = tts.FallbackAdapter([failing, working])
    changes: list[bool] = []
    adapter.on("tts_availability_changed", lambda ev: changes.append(ev.available))
    try:
        out = await run_stream(adapter, ["Hello world."])
    finally:
        await adapter.aclose()
    assert out.duration == pytest.approx(tone_duration(2), abs=0.01)
    assert changes == [False]  # the failing instance was marked unavailable
    assert guarded.tasks == []
