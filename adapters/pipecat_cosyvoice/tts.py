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
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

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
from pipecat.processors.frame_processor import FrameDirection, FrameProcessorSetup
from pipecat.processors.metrics.frame_processor_metrics import FrameProcessorMetrics
from pipecat.services.settings import TTSSettings
from pipecat.services.tts_service import TextAggregationMode, TTSService
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory
from pipecat.utils.types import NOT_GIVEN, NotGiven, is_given

from cosyvoice_stream import (
    AsyncSynthesizer,
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    InstructionError,
    InvalidParameterError,
    ProtocolError,
    ServerError,
    SSMLError,
    SynthesisComplete,
    SynthesisStream,
    TextLimitError,
    ThrottlingError,
    Timeouts,
    VoiceModelMismatchError,
    WordTiming,
    billable_characters,
)
from cosyvoice_stream.endpoint import TokenProvider
from cosyvoice_stream.options import LANGUAGES
from cosyvoice_stream.text import is_ideograph, is_ssml
from cosyvoice_stream.voices import DEFAULT_MODEL, DEFAULT_VOICE

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


def language_to_cosyvoice_language(language: Language | str) -> str | None:
    """The ``language_hints`` value for a Pipecat language, or None when CosyVoice has none.

    Regional variants map to their base language (``en-US`` -> ``en``,
    ``zh-TW`` -> ``zh``); Mandarin (``cmn``) is ``zh``.
    """
    base = str(getattr(language, "value", language)).split("-")[0].strip().lower()
    if base == "cmn":
        base = "zh"
    return base if base in LANGUAGES else None


class _ServiceUsageMetrics(FrameProcessorMetrics):
    """Pipecat's own TTS usage count is ``len(text)`` at the end of a streamed turn.

    CosyVoice bills CJK ideographs twice and reports its own figure per task, so
    the service reports usage itself (see ``CosyVoiceTTSService._report_usage``)
    and the length-based figure is not emitted.
    """

    async def start_tts_usage_metrics(self, text: str) -> MetricsFrame | None:
        return None


@dataclass(eq=False)
class _Utterance:
    """One audio context's CosyVoice stream and the task that delivers its events."""

    context_id: str
    stream: SynthesisStream
    reader: asyncio.Task[None] | None = None
    characters: int = 0  # billable characters pushed (estimate)
    characters_reported: int = 0
    ssml: bool = False  # one SSML document, sent whole
    finishing: bool = False
    cancelled: bool = False
    first_audio: bool = False


def _is_ssml_document(text: str) -> bool:
    """A complete ``<speak>...</speak>`` document (a TTSSpeakFrame's text), not a token of one."""
    return is_ssml(text) and text.rstrip().endswith("</speak>")


def _is_cjk_word(text: str) -> bool:
    """Words written without spaces between them (Chinese, Japanese)."""
    return any(is_ideograph(ch) or "\u3040" <= ch <= "\u30ff" for ch in text)


class CosyVoiceTTSService(TTSService):
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
        sample_rate: Output rate; default: the pipeline's ``audio_out_sample_rate``.
        settings: ``CosyVoiceTTSService.Settings(...)``: every runtime parameter.
        region, workspace: DashScope region / workspace id (instead of ``url``).
        token_provider: Callable returning a key or temporary token (instead of ``api_key``).
        word_timestamps: Ask for word timings (``TTSTextFrame`` per word). When
            off, or for voices without timings, the text is pushed when the
            utterance's audio ends.
        timeouts: Client-side deadlines (``cosyvoice_stream.Timeouts``).
        prewarm: Open a connection (and start a task on it) when the pipeline
            starts and after each utterance, so no utterance pays connection set-up.
        text_aggregation_mode: ``TOKEN`` (default) or ``SENTENCE``.
        early_flush: Flush the first clause of each turn (``,`` ``;`` ``:`` ...)
            so its audio does not wait for the first sentence end (default True;
            see the core's ``AsyncSynthesizer``).
        **kwargs: Passed to ``TTSService``.

    Every parameter is validated here, before any connection is made.
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
        sample_rate: int | None = None,
        settings: TTSSettings | None = None,
        region: str | None = None,
        workspace: str | None = None,
        token_provider: TokenProvider | None = None,
        word_timestamps: bool = True,
        timeouts: Timeouts | None = None,
        prewarm: bool = True,
        text_aggregation_mode: TextAggregationMode | None = None,
        early_flush: bool = True,
        **kwargs: Any,
    ) -> None:
        store = CosyVoiceTTSSettings(
            model=DEFAULT_MODEL,
            voice=DEFAULT_VOICE,
            language=None,
            speech_rate=1.0,
            pitch_rate=1.0,
            volume=50,
            seed=0,
            instruction=None,
            enable_aigc_tag=False,
            aigc_propagator=None,
            aigc_propagate_id=None,
            additional_params={},
        )
        if model is not None:
            store.model = model
        if voice is not None:
            store.voice = voice
        if settings is not None:
            store.apply_update(settings)  # type: ignore[arg-type]
        kwargs.setdefault("metrics", _ServiceUsageMetrics())
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
            return AsyncSynthesizer(
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

        self._make_synthesizer: Callable[[int], AsyncSynthesizer] = make_synthesizer
        # Validates every parameter, the URL and the credentials now.
        self._synth: AsyncSynthesizer | None = make_synthesizer(sample_rate or 24000)
        self._prewarm = prewarm
        self._prewarm_task: asyncio.Task[None] | None = None
        self._utterances: dict[str, _Utterance] = {}
        self._ended: set[str] = set()  # contexts whose end was appended, until they play out

    # -- Pipecat hooks --------------------------------------------------------
    def can_generate_metrics(self) -> bool:
        return True

    @property
    def supports_processing_metrics(self) -> bool:
        # run_tts hands text over; audio arrives on a reader task (TTFB covers latency).
        return False

    def language_to_service_language(self, language: Language) -> str | None:
        return language_to_cosyvoice_language(language)

    def _classify_error(self, exception: Exception) -> ErrorCategory | None:
        if isinstance(exception, CosyVoiceError):
            return _error_category(exception)
        return None

    @property
    def synthesizer(self) -> AsyncSynthesizer | None:
        """The core client (for its pool statistics); None once the service has stopped."""
        return self._synth

    async def setup(self, setup: FrameProcessorSetup) -> None:  # type: ignore[override]
        await super().setup(setup)
        if self._synth is None:
            self._synth = self._make_synthesizer(self.sample_rate)
        else:
            self._synth.update_options(sample_rate=self.sample_rate)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        self._schedule_prewarm()

    async def stop(self, frame: EndFrame) -> None:
        # A graceful end speaks what was sent: a turn the EndFrame cut short (no
        # LLMFullResponseEndFrame) is finished here, before the base waits for
        # every queued context to play out.
        for utterance in list(self._utterances.values()):
            if not utterance.finishing:
                utterance.finishing = True
                await utterance.stream.finish()
        await super().stop(frame)
        await self._shutdown()

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        await self._shutdown()

    async def cleanup(self) -> None:
        await super().cleanup()
        await self._shutdown()

    # -- synthesis --------------------------------------------------------------
    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        """Send ``text`` to the CosyVoice task of ``context_id`` (started on its first text).

        Audio, words and the end of the context are appended by the utterance's
        reader task, tagged with this context id.
        """
        utterance = self._utterances.get(context_id)
        if utterance is not None and utterance.ssml:
            error = SSMLError("CosyVoice takes one SSML document per utterance, sent whole", parameter="text")
            await self.push_error(f"CosyVoice refused the text: {error}", exception=error)
            yield None
            return
        if context_id in self._ended or (utterance is not None and utterance.finishing):
            # The context's task failed (its remaining text is dropped; the next
            # context starts afresh) or was finished (Pipecat sends no more text then).
            logger.debug(f"{self}: context {context_id} has ended; not speaking [{text}]")
            yield None
            return
        try:
            if utterance is None:
                utterance = self._begin_utterance(context_id, ssml=_is_ssml_document(text))
            utterance.stream.push_text(text)
            utterance.characters += billable_characters(text)
            if utterance.ssml:
                # An SSML document (a TTSSpeakFrame's whole text) is one message with
                # enable_ssml; CosyVoice takes nothing more in that task.
                utterance.finishing = True
                await utterance.stream.finish()
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
            if not utterance.finishing:
                utterance.finishing = True
                await utterance.stream.finish()
        elif ctx not in self._ended and self.audio_context_available(ctx):
            # No text reached the service (it is written off, or all text was refused):
            # end the context now rather than after Pipecat's idle timeout.
            await self._end_context(ctx)

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
                    if not utterance.first_audio:
                        utterance.first_audio = True
                        await self.stop_ttfb_metrics()
                    audio = TTSAudioRawFrame(event.audio, self.sample_rate, 1, context_id=ctx)
                    await self.append_to_audio_context(ctx, audio)
                if event.words:
                    await self._add_words(ctx, event.words)
                if isinstance(event, SynthesisComplete):
                    await self._report_usage(utterance, event.metrics.billable_characters)
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
            await self._report_usage(utterance, None)
            await self._report_failure(failure)
        await self._end_context(ctx)

    async def _add_words(self, ctx: str, words: Sequence[WordTiming]) -> None:
        """Word timings (seconds from the context's first audio, increasing across sentences)."""
        batch: list[tuple[str, float]] = []
        batch_cjk = False
        for word in words:
            cjk = _is_cjk_word(word.text)
            if batch and cjk != batch_cjk:
                await self.add_word_timestamps(batch, ctx, includes_inter_frame_spaces=batch_cjk or None)
                batch = []
            batch_cjk = cjk
            batch.append((word.text, word.start))
        if batch:
            await self.add_word_timestamps(batch, ctx, includes_inter_frame_spaces=batch_cjk or None)

    # -- interruptions --------------------------------------------------------
    async def on_audio_context_interrupted(self, context_id: str) -> None:
        """Cancel the context's task: not one more byte of it is delivered."""
        self._ended.discard(context_id)
        utterance = self._utterances.pop(context_id, None)
        if utterance is not None:
            await self._cancel_utterance(utterance)
        await super().on_audio_context_interrupted(context_id)

    async def _handle_interruption(self, frame: InterruptionFrame, direction: FrameDirection) -> None:
        await super()._handle_interruption(frame, direction)
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
        await self._report_usage(utterance, None)

    # -- settings -------------------------------------------------------------
    def _core_options(self) -> dict[str, Any]:
        """The synthesizer keywords for the current settings."""
        s = self._settings

        def value(name: str, default: Any) -> Any:
            current = getattr(s, name)
            return default if current is None or not is_given(current) else current

        return {
            "model": value("model", DEFAULT_MODEL),
            "voice": value("voice", DEFAULT_VOICE),
            "speech_rate": value("speech_rate", 1.0),
            "pitch_rate": value("pitch_rate", 1.0),
            "volume": value("volume", 50),
            "seed": value("seed", 0),
            "language_hints": self._language_hints(),
            "instruction": value("instruction", None),
            "enable_aigc_tag": value("enable_aigc_tag", False),
            "aigc_propagator": value("aigc_propagator", None),
            "aigc_propagate_id": value("aigc_propagate_id", None),
            "additional_params": dict(value("additional_params", {})),
        }

    def _language_hints(self) -> list[str] | None:
        language = self._settings.language
        if language is None or not is_given(language):
            return None
        hint = language_to_cosyvoice_language(language)
        if hint is None:
            raise InvalidParameterError(
                f"language={language!s} is not supported by CosyVoice: expected one of"
                f" {', '.join(LANGUAGES)} (or a regional variant such as en-US, zh-CN)",
                parameter="language",
            )
        return [hint]

    async def _update_settings(self, delta: TTSSettings) -> dict[str, Any]:  # type: ignore[override]
        """Apply a ``TTSUpdateSettingsFrame``: from the next utterance on.

        The new values are validated together; a refused update is reported
        (``ErrorFrame``) and the previous settings stay in force.
        """
        changed = await super()._update_settings(delta)
        if not changed or self._synth is None:
            return changed
        try:
            self._synth.update_options(**self._core_options())
        except CosyVoiceError as error:
            self._revert(changed)
            await self.push_error(
                f"CosyVoice settings update refused, previous settings kept: {error}",
                exception=error,
                category=ErrorCategory.APPLICATION,
            )
            return {}
        self._warn_unhandled_updated_settings([k for k in changed if k in self._settings.extra])
        self._schedule_prewarm()  # a warm task for the new settings
        return changed

    def _revert(self, changed: Mapping[str, Any]) -> None:
        names = {f.name for f in fields(self._settings)}
        for name, old in changed.items():
            if name in names:
                setattr(self._settings, name, old)
            elif is_given(old):
                self._settings.extra[name] = old
            else:
                self._settings.extra.pop(name, None)
        self._sync_model_name_to_metrics()

    # -- metrics and errors ---------------------------------------------------
    async def _report_usage(self, utterance: _Utterance, billed: int | None) -> None:
        """TTS usage in billable characters: the service's figure when it gave one,
        else (interrupted or failed) the estimate of the text sent."""
        characters = (billed if billed is not None else utterance.characters) - utterance.characters_reported
        utterance.characters_reported += max(0, characters)
        if characters <= 0 or not (self.can_generate_metrics() and self.usage_metrics_enabled):
            return
        model = self._settings.model if isinstance(self._settings.model, str) else ""
        data = TTSUsageMetricsData(processor=self.name, model=model, value=characters)
        await self.push_frame(MetricsFrame(data=[data]))

    async def _report_failure(self, error: Exception) -> None:
        permanent = isinstance(error, CosyVoiceError) and _error_category(error).is_permanent
        connection_errors = (ConnectionLostError, ClientTimeoutError, AuthenticationError)
        what = "connection" if isinstance(error, connection_errors) else "task"
        message = f"CosyVoice {what} failed: {error}"
        if permanent:
            message += " (the service stops speaking until its settings or credentials change)"
        await self.push_error(message, exception=error, force_treat_as_permanent=permanent)

    def _schedule_prewarm(self) -> None:
        if not self._prewarm or self._synth is None:
            return
        if self._prewarm_task is not None and not self._prewarm_task.done():
            return
        self._prewarm_task = self.create_task(self._prewarm_now(), name="cosyvoice-prewarm")

    async def _prewarm_now(self) -> None:
        synth = self._synth
        if synth is None:
            return
        try:
            await synth.prewarm()
        except CosyVoiceError as error:
            if error.retryable:  # the next utterance connects (and reports) by itself
                logger.warning(f"{self}: prewarm failed: {error}")
            else:
                await self._report_failure(error)
        except Exception as error:
            logger.warning(f"{self}: prewarm failed: {type(error).__name__}: {error}")

    async def _shutdown(self) -> None:
        if self._prewarm_task is not None:
            if not self._prewarm_task.done():
                await self.cancel_task(self._prewarm_task)
            self._prewarm_task = None
        utterances = list(self._utterances.values())
        self._utterances.clear()
        self._ended.clear()
        for utterance in utterances:
            await self._cancel_utterance(utterance)
        synth, self._synth = self._synth, None
        if synth is not None:
            await synth.aclose()


def _error_category(error: CosyVoiceError) -> ErrorCategory:
    """Pipecat's category of a CosyVoice error; the permanent ones write the service off
    (Pipecat >= 1.8's replacement of ``fatal``) until its settings or credentials change."""
    if isinstance(error, AuthenticationError):
        return ErrorCategory.CONNECTIVITY if error.retryable else ErrorCategory.AUTHENTICATION
    if isinstance(error, (VoiceModelMismatchError, InstructionError)):
        return ErrorCategory.INVALID_REQUEST
    if isinstance(error, (TextLimitError, SSMLError)):
        return ErrorCategory.APPLICATION  # this text was refused; the next one may be fine
    if isinstance(error, InvalidParameterError):
        return ErrorCategory.INVALID_REQUEST if error.permanent else ErrorCategory.APPLICATION
    if isinstance(error, ThrottlingError):
        return ErrorCategory.RATE_LIMIT
    if isinstance(error, (ConnectionLostError, ClientTimeoutError)):
        return ErrorCategory.CONNECTIVITY
    if isinstance(error, (ServerError, ProtocolError)):
        return ErrorCategory.SERVER
    return ErrorCategory.UNKNOWN
