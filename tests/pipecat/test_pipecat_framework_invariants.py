"""Pipecat's own TTS invariants, held by CosyVoiceTTSService against the embedded server.

Ported from pipecat-ai/pipecat's tests (the versions around 1.14):
``test_tts_frame_ordering.py`` (every context framed TTSStartedFrame ... audio
and words ... TTSStoppedFrame, before the frame that followed it; CJK words
carry no spaces), ``test_tts_interruptible_service.py`` and
``test_tts_zero_audio_contexts.py`` (no deadlock when a context is
interrupted before audio or ends silent), ``test_cartesia_tts.py`` (a
mid-reply voice change re-mints the turn context, Korean keeps its spaces),
plus the first-party service contracts: connection events, ``traced_tts``
spans, ``voice_id=``, unknown keywords, usage counted once with a user
``metrics=`` collector.

Not ported, because it cannot hold for CosyVoice: the
``InterruptibleTTSService`` reconnect cases. CosyVoice's binary audio frames
carry no task id, so the service never reuses a connection whose task was
interrupted: it aborts that connection at once (the server stops
synthesizing) and the next utterance takes another warm one; there is no
"reconnect when the bot was speaking" decision to test.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pipecat.frames.frames import (
    DataFrame,
    EndFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    TTSUpdateSettingsFrame,
)
from pipecat.metrics.metrics import TTFBMetricsData, TTSUsageMetricsData
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.runner import WorkerRunner
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.metrics.frame_processor_metrics import FrameProcessorMetrics
from pipecat.services.tts_service import TTSService
from pipecat.utils import deprecation
from pipecat_cosyvoice import CosyVoiceTTSService
from pipecat_helpers import (
    WAIT_S,
    Driver,
    Probe,
    audio_bytes,
    errors,
    metrics_of,
    of_type,
    run_pipeline,
    spoken_tasks,
    tags_of,
    word_frames,
)

from cosyvoice_stream import InvalidParameterError, billable_characters
from cosyvoice_stream.server import EmbeddedServer, Fault

Settings = CosyVoiceTTSService.Settings


@dataclass
class Marker(DataFrame):
    """The frame that follows a TTSSpeakFrame (the ordering tests' ``FooFrame``)."""

    label: str = ""


# -- frame ordering (test_tts_frame_ordering.py) --------------------------------------------
async def test_each_context_is_framed_and_precedes_the_frame_after_it(server: EmbeddedServer) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    frames = [TTSSpeakFrame("Test one."), Marker("1"), TTSSpeakFrame("Test two."), Marker("2")]
    down, up = await run_pipeline(tts, frames)

    assert not errors(up)
    kinds = (TTSStartedFrame, TTSAudioRawFrame, TTSTextFrame, TTSStoppedFrame, Marker)
    relevant = [f for f in down if isinstance(f, kinds)]
    first_marker = next(i for i, f in enumerate(relevant) if isinstance(f, Marker))
    for group, label in ((relevant[: first_marker + 1], "1"), (relevant[first_marker + 1 :], "2")):
        types = [type(f) for f in group]
        started, stopped = types.index(TTSStartedFrame), types.index(TTSStoppedFrame)
        assert started < stopped < types.index(Marker) == len(types) - 1, types
        assert set(types[started + 1 : stopped]) == {TTSAudioRawFrame, TTSTextFrame}, types
        assert group[-1].label == label
        # One context per group: audio, words and the end carry the id the start had.
        ctx = group[started].context_id
        assert {f.context_id for f in group if not isinstance(f, Marker)} == {ctx}


async def test_llm_response_end_follows_every_word(server: EmbeddedServer) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    text = "Words come first. The end of the reply comes last."
    turn = [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(w + " ") for w in text.split()),
        LLMFullResponseEndFrame(),
    ]
    down, _ = await run_pipeline(tts, turn)

    end = next(i for i, f in enumerate(down) if isinstance(f, LLMFullResponseEndFrame))
    last_word = max(i for i, f in enumerate(down) if isinstance(f, TTSTextFrame))
    assert last_word < end
    assert [w.text for w in word_frames(down)] == text.split()


@pytest.mark.parametrize(
    ("language", "text", "joined"),
    [
        ("zh", "你好，世界。", True),
        ("ko", "안녕하세요 세계.", False),  # Korean is written with spaces: they must be kept
    ],
)
async def test_cjk_words_carry_no_spaces_but_korean_keeps_them(
    server: EmbeddedServer, language: str, text: str, joined: bool
) -> None:
    tts = CosyVoiceTTSService(url=server.url, settings=Settings(language=language))
    down, up = await run_pipeline(tts, [TTSSpeakFrame(text)])

    assert not errors(up)
    words = word_frames(down)
    assert words
    if joined:
        assert all(w.includes_inter_frame_spaces for w in words)
        assert "".join(w.text for w in words) == text
    else:
        assert not any(w.includes_inter_frame_spaces for w in words)
        assert " ".join(w.text for w in words) == text


# -- interruption and silent contexts (test_tts_interruptible_service / zero_audio) --------
async def test_no_deadlock_on_interrupt_before_audio(start_server) -> None:
    server = await start_server(first_packet_delay_ms=300)  # the interruption lands before any audio
    tts = CosyVoiceTTSService(url=server.url)
    probe = Probe()

    async def script(driver: Driver) -> None:
        await driver.push_frame(TTSSpeakFrame("This is cut before it starts."))
        await probe.wait_count(TTSStartedFrame)
        await driver.push_frame(InterruptionFrame())
        await driver.push_frame(TTSSpeakFrame("Then this is spoken."))
        await probe.wait_count(TTSStoppedFrame)

    down, up = await run_pipeline(tts, script=script, probe=probe)

    assert not errors(up)
    spoken = [t for t in spoken_tasks(server) if "Then" in "".join(t.texts)]
    (second,) = spoken
    assert tags_of(audio_bytes(down)) == {second.tag}  # not one sample of the interrupted task


async def test_a_silent_context_resumes_frame_processing(server: EmbeddedServer) -> None:
    """A context with nothing to say (no audio) ends, and the frames after it flow."""
    tts = CosyVoiceTTSService(url=server.url)
    down, up = await run_pipeline(tts, [TTSSpeakFrame("..."), Marker("after"), TTSSpeakFrame("Hello.")])

    assert not [e for e in errors(up) if e.fatal]
    markers = of_type(down, Marker)
    assert [m.label for m in markers] == ["after"]
    assert audio_bytes(down)  # the next context is spoken
    assert tts.is_usable


# -- connection events (first-party WebSocket services) ----------------------------------
class EventLog:
    """Records the service's connection events; a test waits on it (bounded)."""

    def __init__(self, tts: CosyVoiceTTSService) -> None:
        self.seen: list[tuple[str, str]] = []
        self._changed = asyncio.Event()
        for name in ("on_connected", "on_disconnected", "on_connection_error"):
            tts.add_event_handler(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., Awaitable[None]]:
        async def record(service: TTSService, *args: str) -> None:
            self.seen.append((name, *args))  # type: ignore[arg-type]
            self._changed.set()

        return record

    def count(self, name: str) -> int:
        return sum(1 for event in self.seen if event[0] == name)

    async def wait_for(self, predicate: Callable[[EventLog], bool]) -> None:
        async def wait() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)


async def test_connection_events_fire_on_connect_and_disconnect(server: EmbeddedServer) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    log = EventLog(tts)

    await run_pipeline(tts, [TTSSpeakFrame("Hello there.")])
    await log.wait_for(lambda log: log.count("on_disconnected") == log.count("on_connected") >= 1)

    assert log.seen[0] == ("on_connected",)
    # Every connection heard of was really opened (a spare cut short by the shutdown may
    # reach the server without ever completing on the client side).
    assert 1 <= log.count("on_connected") <= server.connections_opened
    assert log.count("on_connection_error") == 0


async def test_connection_error_event_on_a_refused_handshake(server: EmbeddedServer) -> None:
    server.add_fault(Fault("handshake_status", status=401, times=5))
    tts = CosyVoiceTTSService(url=server.url)
    log = EventLog(tts)

    _, up = await run_pipeline(tts, [TTSSpeakFrame("Hello there.")])
    await log.wait_for(lambda log: log.count("on_connection_error") >= 1)

    assert log.count("on_connected") == 0
    name, message = log.seen[0]
    assert name == "on_connection_error" and "401" in message
    assert errors(up)  # the failure is also reported in the pipeline


# -- tracing (traced_tts) -------------------------------------------------------------------
def _span_exporter() -> InMemorySpanExporter:
    """An in-memory exporter on the global tracer provider (set once per process)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


async def test_traced_tts_records_a_span_per_context_when_tracing_is_on(server: EmbeddedServer) -> None:
    exporter = _span_exporter()
    tts = CosyVoiceTTSService(url=server.url, settings=Settings(voice="longanhuan"))
    probe = Probe()
    worker = PipelineWorker(
        Pipeline([tts, probe]),
        params=PipelineParams(enable_metrics=True),
        enable_tracing=True,
        cancel_on_idle_timeout=False,
    )

    async def drive() -> None:
        await worker.queue_frame(TTSSpeakFrame("Traced speech."))
        await probe.wait_count(TTSStoppedFrame)
        await worker.queue_frame(EndFrame())

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await asyncio.wait_for(asyncio.gather(runner.run(), drive()), 20.0)

    spans = [s for s in exporter.get_finished_spans() if s.name == "tts"]
    assert len(spans) == 1
    attributes = dict(spans[0].attributes or {})
    assert attributes.get("voice_id") == "longanhuan"
    assert "Traced speech." in str(attributes.get("text"))
    exporter.clear()


async def test_no_span_without_tracing(server: EmbeddedServer) -> None:
    exporter = _span_exporter()
    await run_pipeline(CosyVoiceTTSService(url=server.url), [TTSSpeakFrame("Not traced.")])
    assert not [s for s in exporter.get_finished_spans() if s.name == "tts"]


# -- constructor contracts -------------------------------------------------------------------
async def test_voice_id_is_honoured_with_the_deprecation_warning(server: EmbeddedServer) -> None:
    deprecation._warned_sites.clear()  # Pipecat warns once per call site per process
    with pytest.warns(DeprecationWarning, match=r"voice_id=.*Settings\(voice=\.\.\.\)"):
        tts = CosyVoiceTTSService(url=server.url, voice_id="longanhuan")
    assert tts.settings.voice == "longanhuan"
    await run_pipeline(tts, [TTSSpeakFrame("Which voice is this?")])
    (task,) = spoken_tasks(server)
    assert task.parameters["voice"] == "longanhuan"


def test_voice_wins_over_voice_id() -> None:
    with pytest.warns(DeprecationWarning, match="voice_id="):
        tts = CosyVoiceTTSService(url="ws://127.0.0.1:9/x", voice="longanyang", voice_id="longanhuan")
    assert tts.settings.voice == "longanyang"


def test_a_misspelt_keyword_is_an_error_naming_it() -> None:
    url = "ws://127.0.0.1:9/x"
    with pytest.raises(TypeError, match=r"'speach_rate'.*Settings\(speech_rate=\.\.\.\)"):
        CosyVoiceTTSService(url=url, speach_rate=1.5)
    with pytest.raises(TypeError, match=r"'speech_rate'.*Settings\(speech_rate=\.\.\.\)"):
        CosyVoiceTTSService(url=url, speech_rate=1.5)  # a setting, not a constructor argument
    with pytest.raises(TypeError, match=r"'wrod_timestamps'.*'word_timestamps'"):
        CosyVoiceTTSService(url=url, wrod_timestamps=False)
    # Keywords of Pipecat's base classes still pass through.
    tts = CosyVoiceTTSService(url=url, name="speaker", stop_frame_timeout_s=3.0)
    assert tts.name == "speaker"


# -- mid-reply settings (Cartesia's re-minted turn context) ---------------------------------
async def test_update_settings_mid_reply_switches_voice_for_the_rest_of_the_turn(
    server: EmbeddedServer,
) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    frames = [
        LLMFullResponseStartFrame(),
        *(LLMTextFrame(w) for w in ("Before ", "the ", "change. ")),
        TTSUpdateSettingsFrame(delta=Settings(voice="longanhuan")),
        *(LLMTextFrame(w) for w in ("After ", "the ", "change.")),
        LLMFullResponseEndFrame(),
    ]
    down, up = await run_pipeline(tts, frames)

    assert not errors(up)
    before, after = (
        next(t for t in spoken_tasks(server) if w in "".join(t.texts)) for w in ("Before", "After")
    )
    assert before is not after
    assert "".join(before.texts).strip() == "Before the change."
    assert before.parameters["voice"] == "longanyang" and after.parameters["voice"] == "longanhuan"
    started = of_type(down, TTSStartedFrame)
    assert len(started) == 2 and len(of_type(down, TTSStoppedFrame)) == 2
    # The old voice's audio plays out first, then the new one's; every word is kept.
    first_ctx, second_ctx = (f.context_id for f in started)
    assert tags_of(audio_bytes(down, first_ctx)) == {before.tag}
    assert tags_of(audio_bytes(down, second_ctx)) == {after.tag}
    last_old = max(i for i, f in enumerate(down) if getattr(f, "context_id", None) == first_ctx)
    first_new = min(
        i for i, f in enumerate(down) if isinstance(f, TTSAudioRawFrame) and f.context_id == second_ctx
    )
    assert last_old < first_new
    assert [w.text for w in word_frames(down)] == "Before the change. After the change.".split()


async def test_a_refused_mid_reply_update_keeps_the_turn_going(server: EmbeddedServer) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    frames = [
        LLMFullResponseStartFrame(),
        LLMTextFrame("One two. "),
        TTSUpdateSettingsFrame(delta=Settings(voice="longxiaochun_v2")),  # a v2 voice on v3: refused
        LLMTextFrame("Three four."),
        LLMFullResponseEndFrame(),
    ]
    _, up = await run_pipeline(tts, frames)

    (refused,) = errors(up)
    assert "previous settings kept" in refused.error
    (task,) = spoken_tasks(server)  # the same task went on
    assert "".join(task.texts) == "One two. Three four."
    assert tts.settings.voice == "longanyang"


# -- metrics through Pipecat's public hooks ----------------------------------------------------
async def test_usage_counted_once_with_a_user_metrics_collector(server: EmbeddedServer) -> None:
    collector = FrameProcessorMetrics()
    tts = CosyVoiceTTSService(url=server.url, metrics=collector)
    text = "Usage once. 中文两倍。"
    down, _ = await run_pipeline(tts, [TTSSpeakFrame(text)], metrics=True)

    (task,) = spoken_tasks(server)
    assert tts._metrics is collector  # the collector given is the one in use
    assert [u.value for u in metrics_of(down, TTSUsageMetricsData)] == [task.characters]
    assert task.characters == billable_characters(text)
    ttfb = [m for m in metrics_of(down, TTFBMetricsData) if m.value > 0]
    assert len(ttfb) == 1  # stopped once, by Pipecat, on the first audio frame
    assert "_handle_interruption" not in vars(CosyVoiceTTSService)


# -- one language table for both adapters ---------------------------------------------------
@pytest.mark.parametrize("tag", ["yue", "zh_CN", "eng", "en-US", "zh-Hant-TW", "cmn", "ja-JP", "fr_CA", "ru"])
def test_pipecat_and_livekit_map_languages_alike(tag: str) -> None:
    from livekit.plugins import cosyvoice

    url = "ws://127.0.0.1:9/x"
    pipecat_tts = CosyVoiceTTSService(url=url, settings=Settings(language=tag))
    livekit_tts = cosyvoice.TTS(base_url=url, language=tag)
    assert pipecat_tts.synthesizer is not None
    hints = pipecat_tts.synthesizer.options.language_hints
    assert hints == livekit_tts.synthesizer.options.language_hints
    assert hints is not None and pipecat_tts.language_to_service_language(tag) == hints[0]  # type: ignore[arg-type]


def test_both_adapters_refuse_a_language_without_a_hint() -> None:
    from livekit.plugins import cosyvoice

    url = "ws://127.0.0.1:9/x"
    with pytest.raises(InvalidParameterError, match="language"):
        CosyVoiceTTSService(url=url, settings=Settings(language="es"))
    with pytest.raises(InvalidParameterError, match="language"):
        cosyvoice.TTS(base_url=url, language="es")
