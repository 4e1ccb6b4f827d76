"""``CosyVoiceTTSService``: CosyVoice as a Pipecat (1.14) TTS service.

A thin mapping of ``cosyvoice_stream.AsyncSynthesizer`` onto Pipecat's
``TTSService``: one ``SynthesisStream`` (one CosyVoice task) per audio
context, text pushed as it comes (LLM tokens or sentences), the stream
finished at the end of the turn, its audio, word timings and completion
appended to the audio context it belongs to. Protocol, pooling, resampling
and timestamp work all happen in the core.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal

from loguru import logger
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    Frame,
    InterruptionFrame,
    MetricsFrame,
    StartFrame,
    TTSAudioRawFrame,
    TTSStoppedFrame,
)
from pipecat.metrics.metrics import TTSUsageMetricsData
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor, FrameProcessorSetup
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.tracing.service_decorators import traced_tts
from pipecat.utils.types import NOT_GIVEN, NotGiven, is_given

from cosyvoice_stream import (
    AsyncSynthesizer,
    CosyVoiceError,
    InvalidParameterError,
    SSMLError,
    SynthesisComplete,
    SynthesisOptions,
    SynthesisStream,
    Timeouts,
    WordTiming,
)
from cosyvoice_stream.aio.synthesizer import ConnectionEvent
from cosyvoice_stream.endpoint import TokenProvider
from cosyvoice_stream.failures import describe_failure, error_kind
from cosyvoice_stream.keywords import accepted_keywords, check_keywords
from cosyvoice_stream.languages import find_language_hint, language_hint, spacing_runs
from cosyvoice_stream.text import is_complete_ssml

__all__ = ["CosyVoiceTTSService", "CosyVoiceTTSSettings", "language_to_cosyvoice_language"]


def _not_given() -> Any:
    return NOT_GIVEN


@dataclass
class CosyVoiceTTSSettings(TTSSettings):
    """Runtime-updatable CosyVoice settings (store mode in the service, delta mode in
    ``TTSUpdateSettingsFrame``). Every seed parameter that can change per utterance.

    Parameters:
        model: ``cosyvoice-v3-flash`` (default), ``cosyvoice-v3-plus``, ``cosyvoice-v2``, ...
        voice: a voice of the model's generation (``longanyang``, ``longxiaochun_v2``, ...).
        language: a Pipecat ``Language`` (or code); sent as ``language_hints``
            (zh, en, fr, de, ja, ko, ru). ``None``: no hint.
        speech_rate: 0.5 .. 2.0 (wire name ``rate``).
        pitch_rate: 0.5 .. 2.0 (wire name ``pitch``).
        volume: 0 .. 100.
        seed: 0 .. 65535.
        instruction: style instruction (v3-flash / v3-plus only, at most 128 characters).
        enable_aigc_tag, aigc_propagator, aigc_propagate_id: the AIGC watermark parameters.
        additional_params: merged into the request parameters last (as in the SDK).
    """

    speech_rate: float | NotGiven | None = field(default_factory=_not_given)
    pitch_rate: float | NotGiven | None = field(default_factory=_not_given)
    volume: int | NotGiven | None = field(default_factory=_not_given)
    seed: int | NotGiven | None = field(default_factory=_not_given)
    instruction: str | NotGiven | None = field(default_factory=_not_given)
    enable_aigc_tag: bool | NotGiven | None = field(default_factory=_not_given)
    aigc_propagator: str | NotGiven | None = field(default_factory=_not_given)
    aigc_propagate_id: str | NotGiven | None = field(default_factory=_not_given)
    additional_params: Mapping[str, Any] | NotGiven | None = field(default_factory=_not_given)

    # The wire names and the SDK's names both work in a settings mapping.
    _aliases: ClassVar[dict[str, str]] = {"voice_id": "voice", "rate": "speech_rate", "pitch": "pitch_rate"}


#: The ``language_hints`` value for a Pipecat ``Language`` (or code), None when CosyVoice has
#: none: the core's table, shared with the LiveKit plugin (``en-US``, ``zh_CN``, ``yue``, ``eng``).
language_to_cosyvoice_language = find_language_hint

#: Settings that are core options of the same name, with the core's defaults (store-mode
#: values; also what a setting left unset, or None, means).
_DEFAULTS: dict[str, Any] = {
    f.name: getattr(SynthesisOptions(), f.name)
    for f in fields(CosyVoiceTTSSettings)
    if f.name in {o.name for o in fields(SynthesisOptions)}
}


class _BillableUsage(FrameProcessor):
    """Placed after ``TTSService`` in the MRO, where its ``super()`` calls land.

    Pipecat's TTS usage figure is ``len(text)`` (per sentence, or per streamed
    turn); CosyVoice bills ideographs twice and reports its own count per task,
    which the service pushes as ``TTSUsageMetricsData`` itself. Intercepting
    the public hook here keeps any user-supplied ``metrics=`` collector in
    place for everything else, without a second, length-based usage figure.
    """

    async def start_tts_usage_metrics(self, text: str) -> None:
        return None


@dataclass(eq=False)
class _Utterance:
    """One audio context's CosyVoice stream and the task that delivers its events."""

    context_id: str
    stream: SynthesisStream
    reader: asyncio.Task[None] | None = None
    characters_reported: int = 0
    ssml: bool = False  # one SSML document, sent whole
    finishing: bool = False
    cancelled: bool = False
    first_audio: bool = False


class CosyVoiceTTSService(TTSService, _BillableUsage):
    """Alibaba CosyVoice (DashScope duplex WebSocket) text-to-speech for Pipecat.

    Text streams into one CosyVoice task per audio context: with
    ``TextAggregationMode.TOKEN`` (the default here, since the service segments
    sentences itself) every LLM token goes straight to the task; with
    ``SENTENCE`` each sentence does. The task is finished at the end of the LLM
    turn or of a ``TTSSpeakFrame``. Audio arrives as ``TTSAudioRawFrame`` at the
    pipeline's output rate (any rate: requested natively when CosyVoice has it,
    else resampled by the core), words as ``TTSTextFrame`` with presentation
    times, and an interruption cancels the running task at once.

    Args:
        api_key: DashScope API key; default ``DASHSCOPE_API_KEY``. Never logged.
        url: WebSocket endpoint; default ``DASHSCOPE_WEBSOCKET_BASE_URL``, then
            the region variables, then Beijing. ``ws://`` only for loopback.
        model: Model; ``settings.model`` wins when both are given.
        voice: Voice; ``settings.voice`` wins when both are given.
        voice_id: Deprecated spelling of ``voice`` (as in Pipecat's first-party
            services, with their ``DeprecationWarning``).
        sample_rate: Output rate; default: the pipeline's ``audio_out_sample_rate``.
        settings: ``CosyVoiceTTSService.Settings(...)``: every runtime parameter.
        region, workspace: DashScope region / workspace id (instead of ``url``).
        token_provider: Callable returning a key or temporary token (instead of ``api_key``).
        word_timestamps: Ask for word timings (``TTSTextFrame`` per word). When
            off, or for voices without timings, the text is pushed when the
            utterance's audio ends. ``"auto"`` (default): on where the voice
            catalogue says the voice has them (one log line otherwise);
            ``True`` for a voice without them is refused.
        timeouts: Client-side deadlines (``cosyvoice_stream.Timeouts``).
        prewarm: Open a connection (and start a task on it) when the pipeline
            starts and after each utterance, so no utterance pays connection set-up.
        text_aggregation_mode: ``TOKEN`` (default) or ``SENTENCE``.
        early_flush: Flush the first clause of each turn (``,`` ``;`` ``:`` ...)
            so its audio does not wait for the first sentence end (default True;
            see the core's ``AsyncSynthesizer``).
        **kwargs: Passed to ``TTSService``; a keyword it does not take is a ``TypeError``.

    Every parameter is validated here, before any connection is made.
    Events: ``on_connected``, ``on_disconnected``, ``on_connection_error`` (one
    per CosyVoice connection opened, closed or failed to open).
    """

    Settings = CosyVoiceTTSSettings
    _settings: CosyVoiceTTSSettings

    def __init__(
        self,
        *,
        api_key: str | None = None,
        url: str | None = None,
        model: str | None = None,
        voice: str | None = None,
        voice_id: str | None = None,
        sample_rate: int | None = None,
        settings: TTSSettings | None = None,
        region: str | None = None,
        workspace: str | None = None,
        token_provider: TokenProvider | None = None,
        word_timestamps: bool | Literal["auto"] = "auto",
        timeouts: Timeouts | None = None,
        prewarm: bool = True,
        text_aggregation_mode: TextAggregationMode | None = None,
        early_flush: bool = True,
        **kwargs: Any,
    ) -> None:
        owner = type(self).__name__
        moved = {key: f"settings={owner}.Settings({key}=...)" for key in _DEFAULTS}
        check_keywords(owner, kwargs, accepted_keywords(type(self)), moved)
        store = CosyVoiceTTSSettings(language=None, **_DEFAULTS)
        if voice_id is not None:
            self._warn_init_param_moved_to_settings("voice_id", "voice")
        for key, value in (("model", model), ("voice", voice_id), ("voice", voice)):
            if value is not None:  # voice= wins over the deprecated voice_id=
                setattr(store, key, value)
        if settings is not None:
            store.apply_update(settings)  # type: ignore[arg-type]
        # With SENTENCE aggregation Pipecat sends each sentence without the space
        # that followed it; all sentences of a context go to one CosyVoice task, so
        # without it "one.Two" would reach the service as one word.
        kwargs.setdefault("append_trailing_space", True)
        if text_aggregation_mode is None and kwargs.get("aggregate_sentences") is None:
            text_aggregation_mode = TextAggregationMode("token")  # CosyVoice segments sentences itself
        super().__init__(
            text_aggregation_mode=text_aggregation_mode,
            push_text_frames=False,
            push_start_frame=True,
            push_stop_frames=False,
            sample_rate=sample_rate,
            settings=store,
            **kwargs,
        )

        def make_synthesizer(output_rate: int) -> AsyncSynthesizer:
            # A closure, so the key is held nowhere a repr or log could show it.
            synth = AsyncSynthesizer(
                sample_rate=output_rate,
                format="pcm",
                api_key=api_key,
                url=url,
                region=region,
                workspace=workspace,
                token_provider=token_provider,
                word_timestamp_enabled=word_timestamps,
                timeouts=timeouts,
                prestart=prewarm,
                early_flush=early_flush,
                **self._core_options(),
            )
            synth.add_connection_listener(self._on_connection_event)
            return synth

        self._make_synthesizer: Callable[[int], AsyncSynthesizer] = make_synthesizer
        # Validates every parameter, the URL and the credentials now.
        self._synth: AsyncSynthesizer | None = make_synthesizer(sample_rate or 24000)
        self._prewarm = prewarm
        self._utterances: dict[str, _Utterance] = {}
        self._ended: set[str] = set()  # contexts whose end was appended, until they play out
        self._event_tasks: set[asyncio.Task[None]] = set()

    # -- Pipecat hooks --------------------------------------------------------
    def can_generate_metrics(self) -> bool:
        return True

    @property
    def supports_processing_metrics(self) -> bool:
        # run_tts hands text over; audio arrives on a reader task (TTFB covers latency).
        return False

    def language_to_service_language(self, language: Language) -> str | None:
        return find_language_hint(language)

    def _on_connection_event(self, event: ConnectionEvent, error: CosyVoiceError | None) -> None:
        """The core's connection events as Pipecat's (called on the loop, outside any frame)."""
        args = (f"{error}",) if error is not None else ()
        task = asyncio.ensure_future(self._call_event_handler(f"on_{event}", *args))
        self._event_tasks.add(task)
        task.add_done_callback(self._event_tasks.discard)

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        # The permanent categories write the service off (Pipecat >= 1.8's ``fatal``)
        # until its settings or credentials change.
        return ErrorCategory(error_kind(exception)) if isinstance(exception, CosyVoiceError) else None

    @property
    def synthesizer(self) -> AsyncSynthesizer | None:
        """The core client (for its pool statistics); None once the service has stopped."""
        return self._synth

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        # The pipeline's output rate is known now; a stopped service gets a new synthesizer.
        self._synth = self._synth or self._make_synthesizer(self.sample_rate)
        self._synth.update_options(sample_rate=self.sample_rate)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self._schedule_prewarm()

    async def stop(self, frame: EndFrame) -> None:
        # A graceful end speaks what was sent: a turn the EndFrame cut short (no
        # LLMFullResponseEndFrame) is finished here, before the base waits for
        # every queued context to play out.
        for utterance in list(self._utterances.values()):
            await self._finish(utterance)
        await super().stop(frame)
        await self._shutdown()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._shutdown()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._shutdown()

    # -- synthesis --------------------------------------------------------------
    @traced_tts
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Send ``text`` to the CosyVoice task of ``context_id`` (started on its first text).

        Audio, words and the end of the context are appended by the utterance's
        reader task, tagged with this context id.
        """
        utterance = self._utterances.get(context_id)
        if context_id in self._ended or (utterance is not None and utterance.finishing):
            if utterance is not None and utterance.ssml:  # finished by its one document
                error = SSMLError("one SSML document per utterance, sent whole", parameter="text")
                await self.push_error(f"CosyVoice refused the text: {error}", exception=error)
            else:
                # The context's task failed (its remaining text is dropped; the next
                # context starts afresh) or was finished (Pipecat sends no more text then).
                logger.debug(f"{self}: context {context_id} has ended; not speaking [{text}]")
            yield None
            return
        try:
            if utterance is None:
                # A whole document is a TTSSpeakFrame's text (an LLM's would come token by token).
                utterance = self._begin_utterance(context_id, ssml=is_complete_ssml(text))
            utterance.stream.push_text(text)
            if utterance.ssml:
                # An SSML document (a TTSSpeakFrame's whole text) is one message with
                # enable_ssml; CosyVoice takes nothing more in that task.
                await self._finish(utterance)
        except CosyVoiceError as error:
            await self.push_error(f"CosyVoice refused the text: {error}", exception=error)
        yield None

    def _begin_utterance(self, context_id: str, *, ssml: bool = False) -> _Utterance:
        synth = self._synth
        if synth is None:
            raise InvalidParameterError("the service has stopped", parameter="synthesizer")
        stream = synth.stream(ssml=ssml)
        utterance = _Utterance(context_id, stream, ssml=ssml)
        self._utterances[context_id] = utterance
        utterance.reader = self.create_task(self._deliver(utterance), name=f"cosyvoice-{context_id[:8]}")
        return utterance

    async def flush_audio(self, context_id: str | None = None) -> None:
        """End of the LLM turn (or of a ``TTSSpeakFrame``): finish the context's task."""
        ctx = context_id or self.get_active_audio_context_id()
        if not ctx:
            return
        utterance = self._utterances.get(ctx)
        if utterance is not None:
            await self._finish(utterance)
        elif ctx not in self._ended and self.audio_context_available(ctx):
            # No text reached the service (it is written off, or all text was refused):
            # end the context now rather than after Pipecat's idle timeout.
            await self._end_context(ctx)

    @staticmethod
    async def _finish(utterance: _Utterance) -> None:
        if not utterance.finishing:
            utterance.finishing = True
            await utterance.stream.finish()

    async def _end_context(self, ctx: str) -> None:
        if self.audio_context_available(ctx):  # else Pipecat already ended it (idle timeout)
            self._ended.add(ctx)  # until it has played out (on_audio_context_completed)
            await self.append_to_audio_context(ctx, TTSStoppedFrame(context_id=ctx))
            await self.remove_audio_context(ctx)

    async def on_audio_context_completed(self, context_id: str) -> None:
        self._ended.discard(context_id)
        await super().on_audio_context_completed(context_id)

    async def _deliver(self, utterance: _Utterance) -> None:
        """Move one stream's events into its audio context, then end the context."""
        ctx = utterance.context_id
        failure: Exception | None = None
        try:
            async for event in utterance.stream:
                if utterance.cancelled:
                    return
                if event.audio:
                    utterance.first_audio = True  # Pipecat stops TTFB when it plays the first chunk
                    audio = TTSAudioRawFrame(event.audio, self.sample_rate, 1, context_id=ctx)
                    await self.append_to_audio_context(ctx, audio)
                if event.words:
                    await self._add_words(ctx, event.words)
                if isinstance(event, SynthesisComplete):
                    await self._report_usage(utterance)
        except CosyVoiceError as error:
            failure = error
        except Exception as error:  # a bug must not leave the context open forever
            logger.exception(f"{self}: unexpected error delivering context {ctx}")
            failure = error
        if utterance.cancelled:
            return
        if self._utterances.get(ctx) is utterance:
            del self._utterances[ctx]
        if failure is not None:
            if not utterance.first_audio:
                await self.cancel_ttfb_metrics()  # no first byte to report
            await self._report_usage(utterance)
            await self._report_failure(failure)
        await self._end_context(ctx)

    async def _add_words(self, ctx: str, words: Sequence[WordTiming]) -> None:
        """Word timings (seconds from the context's first audio, increasing across sentences)."""
        for cjk, run in spacing_runs(words):  # Chinese/Japanese words carry no spaces between them
            batch = [(word.text, word.start) for word in run]
            await self.add_word_timestamps(batch, ctx, includes_inter_frame_spaces=cjk or None)

    # -- interruptions --------------------------------------------------------
    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Cancel the context's task: not one more byte of it is delivered."""
        self._ended.discard(context_id)
        utterance = self._utterances.pop(context_id, None)
        if utterance is not None:
            await self._cancel_utterance(utterance)
        await super().on_audio_context_interrupted(context_id)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, InterruptionFrame):
            return
        # A context that already ended in the base (e.g. after its idle timeout)
        # gets no interruption hook; its stream must not keep running either.
        for ctx, utterance in list(self._utterances.items()):
            if not self.audio_context_available(ctx):
                del self._utterances[ctx]
                await self._cancel_utterance(utterance)
        self._ended.intersection_update(self.get_audio_contexts())

    async def _cancel_utterance(self, utterance: _Utterance) -> None:
        utterance.cancelled = True  # the reader drops whatever it holds from here on
        await utterance.stream.cancel()
        if utterance.reader is not None and not utterance.reader.done():
            await self.cancel_task(utterance.reader)
        await self._report_usage(utterance)

    # -- settings -------------------------------------------------------------
    def _core_options(self, settings: CosyVoiceTTSSettings | None = None) -> dict[str, Any]:
        """The synthesizer keywords for ``settings`` (default: the current ones)."""
        settings = settings or self._settings
        options = {}
        for name, default in _DEFAULTS.items():
            current = getattr(settings, name)
            options[name] = default if current is None or not is_given(current) else current
        options["additional_params"] = dict(options["additional_params"])
        language = settings.language
        given = language is not None and is_given(language)
        options["language_hints"] = [language_hint(language)] if given else None
        return options

    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """Apply a ``TTSUpdateSettingsFrame``; a new voice, model or language applies
        to the rest of the current turn, as in Pipecat's Cartesia service.

        The new values are validated together; a refused update is reported
        (``ErrorFrame``) and the previous settings stay in force. Other settings
        apply from the next utterance on.
        """
        candidate = copy.deepcopy(self._settings)
        candidate.apply_update(delta)  # type: ignore[arg-type]
        try:
            options = self._core_options(candidate)
            SynthesisOptions().replace(**options)  # validated together, before anything changes
        except CosyVoiceError as error:
            await self.push_error(
                f"CosyVoice settings update refused, previous settings kept: {error}",
                exception=error,
                category=ErrorCategory.APPLICATION,
            )
            return {}
        changed = await super()._update_settings(delta)
        if not changed:
            return changed
        if self._synth is not None:
            self._synth.update_options(**options)
        self._warn_unhandled_updated_settings([k for k in changed if k in self._settings.extra])
        self._schedule_prewarm()  # a warm task for the new settings
        turn = self._turn_context_id
        if changed.keys() & {"voice", "model", "language"} and turn and self.audio_context_available(turn):
            # A CosyVoice task keeps the voice it started with: finish the turn's
            # context, and the rest of the turn opens a new one with the new settings.
            # As Cartesia does: the sentence pending in the old context is finalized
            # first, or its words (heard, in the old voice) would drop out of the transcript.
            sequenced = await self._aggregated_frame_sequencer.finalize(turn)
            await self._push_sequencer_frames(sequenced, turn)
            await self.flush_audio(context_id=turn)
            self._turn_context_id = None  # else create_context_id() hands back the turn's id
            self._turn_context_id = self.create_context_id()
        return changed

    # -- metrics and errors ---------------------------------------------------
    async def _report_usage(self, utterance: _Utterance) -> None:
        """TTS usage in billable characters not reported yet: the service's figure for
        finished tasks, the estimate of the text sent for the others (interrupted, failed)."""
        characters = utterance.stream.billable_characters - utterance.characters_reported
        utterance.characters_reported += max(0, characters)
        if characters > 0 and self.can_generate_metrics() and self.usage_metrics_enabled:
            model = self._settings.model if isinstance(self._settings.model, str) else ""
            data = TTSUsageMetricsData(processor=self.name, model=model, value=characters)
            await self.push_frame(MetricsFrame(data=[data]))

    async def _report_failure(self, error: Exception) -> None:
        permanent = isinstance(error, CosyVoiceError) and ErrorCategory(error_kind(error)).is_permanent
        await self.push_error(
            describe_failure(error, permanent=permanent), exception=error, force_treat_as_permanent=permanent
        )

    def _schedule_prewarm(self) -> None:
        if self._prewarm and self._synth is not None:
            self._synth.prewarm_soon(on_error=self._report_failure)

    async def _shutdown(self) -> None:
        utterances = list(self._utterances.values())
        self._utterances.clear()
        self._ended.clear()
        for utterance in utterances:
            await self._cancel_utterance(utterance)
        synth, self._synth = self._synth, None
        if synth is not None:
            await synth.aclose()
