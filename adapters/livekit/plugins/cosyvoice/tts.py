"""CosyVoice text-to-speech for LiveKit Agents.

A thin mapping of ``cosyvoice_stream.AsyncSynthesizer`` onto LiveKit's TTS
interface: the core does the protocol, connection pooling, resampling, word
timing and metrics; this module turns its events into ``AudioEmitter`` calls
and its errors into LiveKit's ``APIError`` family.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from livekit.agents import (
    APIConnectionError,
    APIConnectOptions,
    APIError,
    APIStatusError,
    APITimeoutError,
    tts,
    utils,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr
from livekit.agents.utils import is_given
from livekit.agents.voice.io import TimedString

from cosyvoice_stream import (
    AsyncSynthesizer,
    AudioChunk,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    ServerTimeoutError,
    SynthesisComplete,
    TaskMetrics,
    Timeouts,
    WordTimestamps,
)
from cosyvoice_stream.endpoint import TokenProvider
from cosyvoice_stream.failures import http_status
from cosyvoice_stream.languages import language_hint
from cosyvoice_stream.options import SynthesisOptions, resolve_word_timestamps
from cosyvoice_stream.text import is_ssml
from cosyvoice_stream.transcript import TimedPiece, TranscriptAligner

from .models import DEFAULT_MODEL, DEFAULT_VOICE, TTSLanguages, TTSModels, TTSVoices

NUM_CHANNELS = 1
PROVIDER = "DashScope"


class TTS(tts.TTS):
    """Alibaba CosyVoice (DashScope) streaming TTS.

    Args:
        api_key: DashScope API key; default ``DASHSCOPE_API_KEY``. Not needed
            for a loopback server such as the embedded one.
        base_url: WebSocket endpoint; default ``DASHSCOPE_WEBSOCKET_BASE_URL``,
            else the region (``region=`` / ``DASHSCOPE_API_REGION``), else Beijing.
        model, voice: a CosyVoice model and a voice of that model generation.
        sample_rate: output rate. Rates the service supports (8000, 16000,
            22050, 24000, 44100, 48000) are requested natively; any other rate
            is resampled from the nearest supported rate above.
        speech_rate, pitch_rate: 0.5..2.0. volume: 0..100. seed: 0..65535.
        language: language hint ("zh", "en", "ja", ... or a BCP-47 tag such as "en-US").
        instruction: style instruction (cosyvoice-v3-flash / -plus only).
        word_timestamps: request word timings and push them as aligned transcripts.
            ``"auto"`` (default): where the voice catalogue says the voice has
            them; otherwise no aligned transcript (one log line). ``True`` for a
            voice without them is refused.
        region, workspace, token_provider, additional_params, timeouts, prestart:
            passed to ``cosyvoice_stream.AsyncSynthesizer``. A stream's
            ``conn_options.timeout`` also bounds ``timeouts.connect``, ``start``,
            ``first_audio`` and ``idle`` for that stream, as LiveKit expects.
        early_flush: flush the first clause of each stream (``,`` ``;`` ``:`` ...)
            so its audio does not wait for the first sentence end (default True).

    Every parameter is validated here, before any connection, with an error
    that names it (``ValueError``); a missing API key is an ``AuthenticationError``.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        model: TTSModels | str = DEFAULT_MODEL,
        voice: TTSVoices | str = DEFAULT_VOICE,
        sample_rate: int = 24000,
        speech_rate: float = 1.0,
        pitch_rate: float = 1.0,
        volume: int = 50,
        seed: int = 0,
        language: TTSLanguages | str | None = None,
        instruction: str | None = None,
        word_timestamps: bool | Literal["auto"] = "auto",
        region: str | None = None,
        workspace: str | None = None,
        token_provider: TokenProvider | None = None,
        additional_params: Mapping[str, Any] | None = None,
        timeouts: Timeouts | None = None,
        prestart: bool = True,
        early_flush: bool = True,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(
                streaming=True, aligned_transcript=resolve_word_timestamps(word_timestamps, voice)
            ),
            sample_rate=sample_rate,
            num_channels=NUM_CHANNELS,
        )
        self._synth = AsyncSynthesizer(
            model=model,
            voice=voice,
            sample_rate=sample_rate,
            api_key=api_key,
            url=base_url,
            region=region,
            workspace=workspace,
            token_provider=token_provider,
            volume=volume,
            speech_rate=speech_rate,
            pitch_rate=pitch_rate,
            word_timestamp_enabled=word_timestamps,
            seed=seed,
            language_hints=_language_hints(language),
            instruction=instruction,
            additional_params=additional_params,
            timeouts=timeouts,
            prestart=prestart,
            early_flush=early_flush,
        )
        self._streams: weakref.WeakSet[SynthesizeStream] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"cosyvoice.TTS({self._synth!r})"

    @property
    def model(self) -> str:
        return self._synth.options.model

    @property
    def provider(self) -> str:
        return PROVIDER

    @property
    def synthesizer(self) -> AsyncSynthesizer:
        """The core client (its ``pool_stats``, ``options``, ``url``)."""
        return self._synth

    def update_options(
        self,
        *,
        model: NotGivenOr[TTSModels | str] = NOT_GIVEN,
        voice: NotGivenOr[TTSVoices | str] = NOT_GIVEN,
        speech_rate: NotGivenOr[float] = NOT_GIVEN,
        pitch_rate: NotGivenOr[float] = NOT_GIVEN,
        volume: NotGivenOr[int] = NOT_GIVEN,
        seed: NotGivenOr[int] = NOT_GIVEN,
        language: NotGivenOr[TTSLanguages | str | None] = NOT_GIVEN,
        instruction: NotGivenOr[str | None] = NOT_GIVEN,
        additional_params: NotGivenOr[Mapping[str, Any]] = NOT_GIVEN,
    ) -> None:
        """Change options for streams created from now on (validated at once).

        Streams already running keep the options they started with.
        """
        changes: dict[str, Any] = {}
        for name, value in (
            ("model", model),
            ("voice", voice),
            ("speech_rate", speech_rate),
            ("pitch_rate", pitch_rate),
            ("volume", volume),
            ("seed", seed),
            ("instruction", instruction),
            ("additional_params", additional_params),
        ):
            if is_given(value):
                changes[name] = value
        if is_given(language):
            changes["language_hints"] = _language_hints(language)
        if changes:
            self._synth.update_options(**changes)

    def _stream_options(self) -> SynthesisOptions:
        """The options a new stream keeps, whatever ``update_options`` does later
        (immutable; the output rate is fixed for the plugin's lifetime)."""
        return self._synth.options

    def _stream_timeouts(self, conn_options: APIConnectOptions) -> Timeouts:
        """LiveKit's per-request timeout bounds the wait for a connection and each wait
        for the server (a tighter ``timeouts=`` value still applies); silence while the
        LLM may still send text is not one of them."""
        mine, t = self._synth.timeouts, conn_options.timeout
        waits = {name: min(t, getattr(mine, name)) for name in ("connect", "start", "first_audio", "idle")}
        return dataclasses.replace(mine, **waits)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> ChunkedStream:
        """Synthesize a whole text; an SSML document (``<speak>...</speak>``) is allowed here."""
        return ChunkedStream(tts=self, input_text=text, conn_options=conn_options)

    def stream(self, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> SynthesizeStream:
        stream = SynthesizeStream(tts=self, conn_options=conn_options)
        self._streams.add(stream)
        return stream

    def prewarm(self) -> None:
        """Open a warm connection (with a task already started) in the background;
        a failure is logged and the first stream connects instead."""
        self._synth.prewarm_soon()

    async def aclose(self) -> None:
        for stream in list(self._streams):
            await stream.aclose()
        self._streams.clear()
        await self._synth.aclose()  # ends a prewarm still running


class ChunkedStream(tts.ChunkedStream):
    """One whole text (plain or SSML) as one CosyVoice task."""

    def __init__(self, *, tts: TTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._tts: TTS = tts
        self._options = tts._stream_options()
        self._timeouts = tts._stream_timeouts(conn_options)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._tts.sample_rate,
            num_channels=NUM_CHANNELS,
            mime_type="audio/pcm",
        )
        text = self._input_text
        if not text.strip():
            return
        transcript = TranscriptAligner(ssml=is_ssml(text))
        transcript.add_text(text)
        timed = self._tts.capabilities.aligned_transcript
        first = True
        try:
            events = self._tts._synth.synthesize(text, options=self._options, timeouts=self._timeouts)
            async with contextlib.aclosing(events):
                async for event in events:
                    if isinstance(event, AudioChunk):
                        output_emitter.push(event.audio)
                    elif isinstance(event, WordTimestamps):
                        if timed:
                            output_emitter.push_timed_transcript(_timed(transcript.align(event.words)))
                    elif isinstance(event, SynthesisComplete):
                        if first:
                            _record_connection(self, event.metrics)
                            first = False
                        _note_request(output_emitter, event.metrics)
        except CosyVoiceError as error:
            raise _api_error(error) from error
        if timed and (rest := transcript.rest()):
            output_emitter.push_timed_transcript(_timed([rest]))
        # No flush(): LiveKit's end_input() marks the held-back tail final (a flush would
        # release it first and end the segment with a 10 ms silent marker frame).


class SynthesizeStream(tts.SynthesizeStream):
    """Streamed text in, one segment of audio out.

    The CosyVoice task starts when the stream is created (connection and
    run-task overlap with waiting for the first token). Pushed text goes to
    the service as it comes (the service segments sentences); a flush is the
    core's flush: what was pushed is synthesized now, in the same task.
    (livekit-agents 1.8.9 itself drops text pushed after a flush: one stream,
    one segment.)
    """

    def __init__(self, *, tts: TTS, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, conn_options=conn_options)
        self._tts: TTS = tts
        self._options = tts._stream_options()
        self._timeouts = tts._stream_timeouts(conn_options)

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._tts.sample_rate,
            num_channels=NUM_CHANNELS,
            mime_type="audio/pcm",
            stream=True,
        )
        try:
            core = self._tts._synth.stream(options=self._options, timeouts=self._timeouts)
        except CosyVoiceError as error:
            raise _api_error(error) from error
        transcript = TranscriptAligner()
        timed = self._tts.capabilities.aligned_transcript
        segment_started = False

        def start_segment(task_id: str) -> None:
            nonlocal segment_started
            if not segment_started:
                segment_started = True
                output_emitter.start_segment(segment_id=task_id or utils.shortuuid())

        async def forward_input() -> None:
            async for data in self._input_ch:
                if isinstance(data, self._FlushSentinel):
                    core.flush()
                    continue
                if data.strip():
                    self._mark_started()
                core.push_text(data)
                transcript.add_text(data)
            await core.finish()

        async def forward_output() -> None:
            first = True
            async for event in core:
                if isinstance(event, AudioChunk):
                    start_segment(event.task_id)
                    output_emitter.push(event.audio)
                elif isinstance(event, WordTimestamps):
                    start_segment(event.task_id)
                    if timed:
                        output_emitter.push_timed_transcript(_timed(transcript.align(event.words)))
                elif isinstance(event, SynthesisComplete):
                    if first:
                        _record_connection(self, event.metrics)
                        first = False
                    _note_request(output_emitter, event.metrics)
            if segment_started:
                if timed and (rest := transcript.rest()):
                    output_emitter.push_timed_transcript(_timed([rest]))
                output_emitter.end_segment()

        tasks = [
            asyncio.create_task(forward_input(), name="cosyvoice.forward_input"),
            asyncio.create_task(forward_output(), name="cosyvoice.forward_output"),
        ]
        try:
            await asyncio.gather(*tasks)
        except CosyVoiceError as error:
            raise _api_error(error) from error
        finally:
            await utils.aio.cancel_and_wait(*tasks)
            await core.aclose()  # cancels the task at once if it did not end


def _record_connection(stream: tts.ChunkedStream | tts.SynthesizeStream, metrics: TaskMetrics) -> None:
    """Feed the pool's figures of the stream's first task into LiveKit's TTSMetrics:
    ``acquire_time`` is the whole wait for a connection, as ``utils.ConnectionPool``'s."""
    stream._connection_reused = metrics.connection_reused
    stream._acquire_time = metrics.acquire_time or 0.0


def _note_request(output_emitter: tts.AudioEmitter, metrics: TaskMetrics) -> None:
    if metrics.request_uuid:
        output_emitter._note_provider_request_id(metrics.request_uuid)


def _language_hints(language: str | None) -> list[str] | None:
    return None if language is None else [language_hint(language)]


def _api_error(error: CosyVoiceError) -> APIError:
    """The LiveKit error for a core error; ``retryable`` comes from the core."""
    retryable = error.retryable
    # Raised ``from error``: LiveKit appends the cause's message to these two.
    if isinstance(error, (ClientTimeoutError, ServerTimeoutError)):
        return APITimeoutError("CosyVoice timed out", retryable=retryable)
    if isinstance(error, ConnectionLostError):
        return APIConnectionError("CosyVoice connection failed", retryable=retryable)
    status = http_status(error)
    if status is not None:
        return APIStatusError(
            str(error),
            status_code=status,
            request_id=error.task_id,
            body={"code": error.code} if error.code else None,
            retryable=retryable,
        )
    return APIError(f"CosyVoice failed: {error}", retryable=retryable)


def _timed(pieces: Sequence[TimedPiece]) -> list[TimedString]:
    """The core's transcript pieces as LiveKit's ``TimedString`` (untimed when the core has no time)."""
    return [
        TimedString(p.text, start_time=p.start, end_time=p.end)
        if p.start is not None and p.end is not None
        else TimedString(p.text)
        for p in pieces
    ]
