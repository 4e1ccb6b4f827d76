"""AsyncSynthesizer: the asyncio client, one per voice agent (or per process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..clauses import DEFAULT_MIN_CHARACTERS
from ..endpoint import Credentials, TokenProvider, resolve_url
from ..errors import CosyVoiceError, InvalidParameterError
from ..events import AudioChunk, StreamEvent, SynthesisComplete, TaskMetrics, WordTimestamps
from ..options import SynthesisOptions, service_sample_rate
from ..protocol import check_fragment
from ..session import TaskSession
from ..text import check_text, is_ssml
from ..timestamps import WordTiming
from ..voices import DEFAULT_MODEL, DEFAULT_VOICE
from .connection import Connection, Timeouts
from .pool import ConnectionPool, PoolStats
from .stream import SynthesisStream

logger = logging.getLogger("cosyvoice_stream")

#: What a connection listener hears: a connection opened, one closed or
#: dropped, or an attempt to open one failed (with the error).
ConnectionEvent = Literal["connected", "disconnected", "connection_error"]
ConnectionListener = Callable[[ConnectionEvent, "CosyVoiceError | None"], None]


@dataclass
class SynthesisResult:
    """The whole output of one ``synthesize_audio()`` call."""

    audio: bytes
    sample_rate: int
    words: list[WordTiming] = field(default_factory=list)
    metrics: list[TaskMetrics] = field(default_factory=list)


class AsyncSynthesizer:
    """CosyVoice over asyncio: pooled connections, streaming text in, PCM out.

    ``sample_rate`` is the rate you get: 16-bit mono PCM, requested natively
    when the service supports the rate, else resampled with soxr from the
    nearest supported rate above. Every other keyword is a seed parameter
    (see ``SynthesisOptions``) and is validated here, before any connection.

    Credentials: ``api_key`` or ``DASHSCOPE_API_KEY``, or ``token_provider``
    (a callable returning a key or temporary token, sync or async, called for
    every new connection). Endpoint: ``url`` or ``DASHSCOPE_WEBSOCKET_BASE_URL``
    or ``region``/``workspace`` (``DASHSCOPE_API_REGION``/``DASHSCOPE_WORKSPACE_ID``).

    ``prestart``: after each task, and on ``prewarm()``, start the next task
    on the warm connection so the run-task round trip is off the latency path.

    ``early_flush``: each ``stream()`` flushes once at the end of its first
    clause (``,`` ``;`` ``:`` ``—`` ``，`` ``、`` ... or a sentence end, once the
    text holds ``early_flush_min_characters`` billable characters), so first
    audio does not wait for the first sentence to end. Whole texts
    (``synthesize()``) are never flushed early: the server has them at once.
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        voice: str = DEFAULT_VOICE,
        *,
        sample_rate: int = 24000,
        format: str = "pcm",
        api_key: str | None = None,
        url: str | None = None,
        region: str | None = None,
        workspace: str | None = None,
        token_provider: TokenProvider | None = None,
        volume: int = 50,
        speech_rate: float = 1.0,
        pitch_rate: float = 1.0,
        bit_rate: int | None = None,
        word_timestamp_enabled: bool | Literal["auto"] = False,
        seed: int = 0,
        language_hints: Sequence[str] | None = None,
        instruction: str | None = None,
        enable_aigc_tag: bool = False,
        aigc_propagator: str | None = None,
        aigc_propagate_id: str | None = None,
        additional_params: Mapping[str, Any] | None = None,
        timeouts: Timeouts | None = None,
        prestart: bool = True,
        max_idle_connections: int = 4,
        keep_warm: int = 1,
        early_flush: bool = True,
        early_flush_min_characters: int = DEFAULT_MIN_CHARACTERS,
    ) -> None:
        self.output_rate = sample_rate
        self.options = SynthesisOptions(
            model=model,
            voice=voice,
            format=format,
            sample_rate=self._service_rate(format, sample_rate),
            volume=volume,
            speech_rate=speech_rate,
            pitch_rate=pitch_rate,
            bit_rate=bit_rate,
            word_timestamp_enabled=word_timestamp_enabled,
            seed=seed,
            language_hints=tuple(language_hints) if language_hints is not None else None,
            instruction=instruction,
            enable_aigc_tag=enable_aigc_tag,
            aigc_propagator=aigc_propagator,
            aigc_propagate_id=aigc_propagate_id,
            additional_params=dict(additional_params or {}),
        )
        self.url = resolve_url(url, region=region, workspace=workspace)
        self._workspace = workspace
        self._credentials = Credentials.resolve(api_key, token_provider, self.url)
        if timeouts is not None and not isinstance(timeouts, Timeouts):
            raise InvalidParameterError(
                f"timeouts must be a cosyvoice_stream.Timeouts, got {type(timeouts).__name__}",
                parameter="timeouts",
            )
        for name, value in (("max_idle_connections", max_idle_connections), ("keep_warm", keep_warm)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 1000:
                raise InvalidParameterError(
                    f"{name}={value!r} is invalid: expected an int in [0, 1000]", parameter=name
                )
        for flag, given in (("prestart", prestart), ("early_flush", early_flush)):
            if not isinstance(given, bool):
                raise InvalidParameterError(
                    f"{flag}={given!r} is invalid: expected True or False", parameter=flag
                )
        if (
            isinstance(early_flush_min_characters, bool)
            or not isinstance(early_flush_min_characters, int)
            or not 0 <= early_flush_min_characters <= 2000
        ):
            raise InvalidParameterError(
                f"early_flush_min_characters={early_flush_min_characters!r} is invalid:"
                " expected an int in [0, 2000]",
                parameter="early_flush_min_characters",
            )
        self.early_flush = early_flush
        self.early_flush_min_characters = early_flush_min_characters
        #: False once a server failed a task in answer to a flush (see ``stream()``).
        self.flush_supported = True
        self.timeouts = timeouts or Timeouts()
        self.prestart = prestart
        self.pool = ConnectionPool(
            self._open_connection,
            max_idle=max_idle_connections,
            keep_warm=keep_warm,
            prepare=self._prepare_connection,
            opening_wait=self.timeouts.connect + self.timeouts.start,
            # Idle primed tasks go well before the service's text timeout (18 of 23 s).
            primed_ttl=self.timeouts.server_text * 18 / 23,
        )
        self.pool.current_options = self.options
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[ConnectionListener] = []
        self._prewarming: asyncio.Task[None] | None = None
        self._streams: weakref.WeakSet[SynthesisStream] = weakref.WeakSet()

    def _flush_rejected(self, error: CosyVoiceError) -> None:
        """A server failed a task in answer to a flush: stop flushing, say so once."""
        if self.flush_supported:
            self.flush_supported = False
            logger.warning(
                "the server failed a task in answer to a flush (%s); flushes are off for this"
                " synthesizer, and the utterance is retried without them if none of it was delivered",
                error.code or type(error).__name__,
            )

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a stream's task, tracked so ``aclose()`` can end it."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            # A cancelled task keeps its CancelledError, whose traceback holds the task's
            # frames and so its stream, which holds the task: asking for it hands it over,
            # and it goes with this frame instead of staying for the garbage collector.
            with contextlib.suppress(asyncio.CancelledError):
                task.exception()

    @staticmethod
    def _service_rate(format: str, sample_rate: int) -> int:
        if format == "pcm":
            return service_sample_rate(sample_rate)
        return sample_rate  # encoded formats: the service's rate, validated by SynthesisOptions

    def __repr__(self) -> str:
        return (
            f"AsyncSynthesizer(model={self.options.model!r}, voice={self.options.voice!r},"
            f" sample_rate={self.output_rate}, url={self.url!r}, credentials={self._credentials!r})"
        )

    # -- configuration --------------------------------------------------------
    def update_options(self, **changes: Any) -> None:
        """Change parameters for streams created from now on (validated at once)."""
        if "sample_rate" in changes:
            self.output_rate = changes["sample_rate"]
            changes["sample_rate"] = self._service_rate(
                changes.get("format", self.options.format), self.output_rate
            )
        if "language_hints" in changes and changes["language_hints"] is not None:
            changes["language_hints"] = tuple(changes["language_hints"])
        self.options = self.options.replace(**changes)
        self.pool.set_current_options(self.options)

    def _options_for(
        self, overrides: Mapping[str, Any], base: SynthesisOptions | None = None
    ) -> tuple[SynthesisOptions, int]:
        """The options of one utterance: ``base`` (or the synthesizer's) with ``overrides``."""
        if base is not None and not isinstance(base, SynthesisOptions):
            raise InvalidParameterError(
                f"options must be a SynthesisOptions, got {type(base).__name__}", parameter="options"
            )
        options = base or self.options
        if not overrides:
            return options, self.output_rate
        changes = dict(overrides)
        output_rate = changes.pop("sample_rate", self.output_rate)
        changes["sample_rate"] = self._service_rate(changes.get("format", options.format), output_rate)
        return options.replace(**changes), output_rate

    # -- connections ----------------------------------------------------------
    def add_connection_listener(self, listener: ConnectionListener) -> None:
        """Call ``listener(event, error)`` (synchronously, on the event loop) whenever a
        connection opens, closes or drops, or fails to open (frameworks' connection events)."""
        self._listeners.append(listener)

    def _notify(self, event: ConnectionEvent, error: CosyVoiceError | None = None) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, error)
            except Exception:  # a listener's bug must not break the connection's owner
                logger.exception("cosyvoice connection listener failed")

    async def _open_connection(self) -> Connection:
        try:
            conn = await Connection.open(
                self.url, self._credentials, self.timeouts, workspace=self._workspace
            )
        except CosyVoiceError as error:
            self._notify("connection_error", error)
            raise
        self._notify("connected")
        conn.ws.connection_lost_waiter.add_done_callback(lambda _: self._notify("disconnected"))
        return conn

    def _new_session(self, options: SynthesisOptions, output_rate: int, *, ssml: bool = False) -> TaskSession:
        return TaskSession(options, output_rate=output_rate, ssml=ssml)

    async def _recycle(self, conn: Connection) -> None:
        """A task finished cleanly on ``conn``: prime the next one there, then pool it."""
        if self.prestart and not self._closed and conn.usable:
            try:
                await self._prime(conn)
            except Exception:  # priming is an optimisation; a broken connection is dropped
                self.pool.discard(conn)
                return
        self.pool.release(conn)

    async def _prepare_connection(self, conn: Connection) -> None:
        """Connections opened ahead of need get a started task when ``prestart``."""
        if self.prestart:
            await self._prime(conn)

    async def _prime(self, conn: Connection) -> None:
        session = self._new_session(self.options, self.output_rate)
        session.start()
        conn.primed_at = time.monotonic()  # the service's text window starts with run-task
        for message in session.data_to_send():
            await asyncio.wait_for(conn.ws.send(message), self.timeouts.connect)
        conn.primed = session

    async def prewarm(self, connections: int = 1) -> None:
        """Open ``connections`` warm connections now (primed with a started task
        when ``prestart``), so the first utterance pays no connection set-up."""
        self._check_open()
        await self.pool.prewarm(connections)

    def prewarm_soon(self, on_error: Callable[[CosyVoiceError], Awaitable[None]] | None = None) -> None:
        """``prewarm()`` in the background (one at a time; ``aclose()`` ends it).

        A retryable failure is logged: the next utterance connects, and reports,
        by itself. Any other failure goes to ``on_error`` (else it is logged).
        Without a running event loop this does nothing.
        """
        if self._closed or (self._prewarming is not None and not self._prewarming.done()):
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._prewarming = self._spawn(self._prewarm_reporting(on_error))

    async def _prewarm_reporting(self, on_error: Callable[[CosyVoiceError], Awaitable[None]] | None) -> None:
        try:
            await self.prewarm()
        except CosyVoiceError as error:
            if error.retryable or on_error is None:
                logger.warning("cosyvoice prewarm failed: %s", error)
            else:
                await on_error(error)

    @property
    def pool_stats(self) -> PoolStats:
        return self.pool.stats

    # -- synthesis ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise InvalidParameterError(
                "the synthesizer is closed; create a new one", parameter="synthesizer"
            )

    def stream(
        self,
        *,
        options: SynthesisOptions | None = None,
        ssml: bool = False,
        timeouts: Timeouts | None = None,
        early_flush: bool | None = None,
        **overrides: Any,
    ) -> SynthesisStream:
        """A new utterance with streaming text input.

        ``options`` (a snapshot taken by an adapter) replaces the synthesizer's
        options for this utterance; keyword overrides apply on top, to it alone.
        ``ssml=True`` makes it a whole-document SSML utterance: exactly one
        push of one ``<speak>`` document (at most 2,000 characters).
        ``timeouts`` replaces the synthesizer's deadlines for this utterance, and
        its ``connect`` then also bounds the whole wait for a connection
        (pooled, being opened, or new). ``early_flush``: this stream's choice
        (default: the synthesizer's).
        """
        self._check_open()
        resolved, output_rate = self._options_for(overrides, options)
        return self._track(
            SynthesisStream(
                self,
                resolved,
                output_rate,
                ssml=ssml,
                timeouts=_check_timeouts(timeouts),
                early_flush=self.early_flush if early_flush is None else early_flush,
                early_flush_min_characters=self.early_flush_min_characters,
            )
        )

    def _track(self, stream: SynthesisStream) -> SynthesisStream:
        """Remember ``stream`` so that ``aclose()`` can end its reader."""
        self._streams.add(stream)
        return stream

    def synthesize(
        self,
        text: str,
        *,
        options: SynthesisOptions | None = None,
        timeouts: Timeouts | None = None,
        **overrides: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Synthesize a whole text; iterate the result for audio, word and completion events.

        The text and options are checked here, at the call. SSML documents
        (``<speak>...``) are accepted here, and only here: they go as one
        message with ``enable_ssml`` (at most 2,000 characters). ``timeouts``:
        as for ``stream()``.
        """
        self._check_open()
        check_text(text)
        if not text.strip():
            raise InvalidParameterError("text is empty or whitespace only", parameter="text")
        ssml = is_ssml(text)
        check_fragment(text, ssml=ssml, characters_sent=0, messages_sent=0)
        resolved, output_rate = self._options_for(overrides, options)
        if ssml:
            resolved.check_ssml()
        return self._synthesize(text, resolved, output_rate, ssml, _check_timeouts(timeouts))

    async def _synthesize(
        self, text: str, options: SynthesisOptions, output_rate: int, ssml: bool, timeouts: Timeouts | None
    ) -> AsyncGenerator[StreamEvent, None]:
        stream = self._track(SynthesisStream(self, options, output_rate, ssml=ssml, timeouts=timeouts))
        try:
            stream.push_text(text)
            await stream.finish()
            async for event in stream:
                yield event
        finally:
            await stream.aclose()

    async def synthesize_audio(
        self, text: str, *, options: SynthesisOptions | None = None, **overrides: Any
    ) -> SynthesisResult:
        """Synthesize a whole text and return all of its audio and word timings."""
        chunks: list[bytes] = []
        result = SynthesisResult(b"", self._options_for(overrides, options)[1])
        async for event in self.synthesize(text, options=options, **overrides):
            if isinstance(event, AudioChunk):
                chunks.append(event.audio)
            elif isinstance(event, WordTimestamps):
                result.words.extend(event.words)
            elif isinstance(event, SynthesisComplete):
                result.metrics.append(event.metrics)
        result.audio = b"".join(chunks)
        return result

    async def aclose(self) -> None:
        """Close every connection. Streams still running are cut off.

        Every reader of a stream ends promptly: what its tasks delivered
        before is still read, then ``TaskCancelledError`` (or the end of the
        iteration, for a stream already complete).
        """
        if self._closed:
            return
        self._closed = True
        for stream in list(self._streams):
            stream._owner_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.aclose()

    async def __aenter__(self) -> AsyncSynthesizer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.aclose()


def _check_timeouts(timeouts: object) -> Timeouts | None:
    if timeouts is not None and not isinstance(timeouts, Timeouts):
        raise InvalidParameterError(
            f"timeouts must be a cosyvoice_stream.Timeouts, got {type(timeouts).__name__}",
            parameter="timeouts",
        )
    return timeouts
