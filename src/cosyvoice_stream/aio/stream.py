"""SynthesisStream: text in as it comes, audio and word timings out, cancel at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import replace
from typing import Any, Protocol, Union

from websockets.exceptions import ConnectionClosed

from ..clauses import FirstClause
from ..errors import (
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    InstructionError,
    InvalidParameterError,
    ServerError,
    SSMLError,
    TaskCancelledError,
    TextLimitError,
    VoiceModelMismatchError,
)
from ..events import StreamEvent, SynthesisComplete, TaskMetrics, WordTimestamps
from ..options import SynthesisOptions
from ..protocol import TaskState, check_fragment
from ..redact import server_text
from ..session import TaskSession
from ..text import billable_characters, is_ssml
from ..timestamps import WordTiming
from .connection import Connection, Timeouts, connection_lost, framing_error
from .pool import ConnectionPool

logger = logging.getLogger("cosyvoice_stream")

_QueueItem = Union[StreamEvent, CosyVoiceError, None]  # noqa: UP007  # None: the task ended without audio
#: One entry of a task's text log: (text, pushed_at); a text of None is a flush.
_Entry = tuple[Union[str, None], float]  # noqa: UP007


class StreamHost(Protocol):
    """What a stream needs of its synthesizer (``AsyncSynthesizer`` is one).

    Declared here so this module does not import the synthesizer module,
    which imports this one.
    """

    pool: ConnectionPool
    timeouts: Timeouts
    #: False once a server failed a task in answer to a flush: no more flushes are sent.
    flush_supported: bool
    #: True once ``aclose()`` ran: no stream may start a task.
    _closed: bool

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]: ...

    def _new_session(
        self, options: SynthesisOptions, output_rate: int, *, ssml: bool = False
    ) -> TaskSession: ...

    async def _recycle(self, conn: Connection) -> None: ...

    def _flush_rejected(self, error: CosyVoiceError) -> None: ...


class _TaskRun:
    """One task of a stream: its connection, its reader/writer, its event queue."""

    def __init__(
        self,
        synth: StreamHost,
        options: SynthesisOptions,
        output_rate: int,
        ssml: bool,
        text_offset: int,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.synth = synth
        # A stream's own deadlines (a framework's per-request timeout) also bound
        # the whole wait for a connection; else the synthesizer's apply.
        self.timeouts = timeouts or synth.timeouts
        self.bound_acquire = timeouts is not None
        self.options = options
        self.output_rate = output_rate
        self.ssml = ssml
        self.text_offset = text_offset  # characters of the stream's text before this task
        self.queue: asyncio.Queue[_QueueItem] = asyncio.Queue()
        self.pending: list[_Entry] = []  # text and flushes before the session exists
        self.pushed: list[_Entry] = []  # all text and flushes, replayed if the task is retried
        self.delivered = False
        self.reused = False
        self.billed: int | None = None  # the service's figure, once the task completed
        self.characters = 0
        self.messages = 0
        self.has_text = False
        self.unflushed = False  # text pushed since the last flush
        self.finish_requested = False
        self.cancelled = False
        self.session: TaskSession | None = None
        self.conn: Connection | None = None
        self._send_wake = asyncio.Event()
        self._reading: TaskSession | None = None  # the session the reader is serving
        self._watchdog: asyncio.TimerHandle | None = None
        self._interruption: CosyVoiceError | str | None = None
        self._last_activity = 0.0
        self._audio_seen = False
        self._reprime_timer: asyncio.TimerHandle | None = None
        self._fresh_task = False  # a primed task ran out of time: start a new one
        self.requested_at = time.monotonic()
        self.task = synth._spawn(self._run())

    @property
    def abandoned(self) -> bool:
        """Finished without a word of text: the started task can serve another stream."""
        return self.finish_requested and not self.has_text

    # -- caller side --------------------------------------------------------
    def push(self, text: str) -> None:
        pieces = check_fragment(
            text, ssml=self.ssml, characters_sent=self.characters, messages_sent=self.messages
        )
        self.characters += billable_characters(text)
        self.messages += len(pieces)
        self.has_text = True
        self.unflushed = True
        now = time.monotonic()
        self.pushed.append((text, now))
        if self.session is not None:
            if self.session.error is not None:
                raise self.session.error
            self.session.send_text(text, now)
            self._send_wake.set()
        else:
            self.pending.append((text, now))

    def flush(self) -> None:
        """Have the server synthesize what it holds; nothing is sent when it holds nothing new."""
        if self.ssml or not self.unflushed or self.finish_requested or not self.synth.flush_supported:
            return  # an SSML task takes exactly one message: its document
        self.unflushed = False
        now = time.monotonic()
        self.pushed.append((None, now))
        if self.session is not None:
            if self.session.error is not None:
                raise self.session.error
            self._send_flush(self.session)
            self._send_wake.set()
        else:
            self.pending.append((None, now))

    def _send_flush(self, session: TaskSession) -> None:
        if self.synth.flush_supported and session.protocol.state in (TaskState.STARTING, TaskState.STARTED):
            session.flush()

    def _replay(self, session: TaskSession) -> None:
        for text, pushed_at in self.pending:
            if text is None:
                self._send_flush(session)
            else:
                session.send_text(text, pushed_at)
        self.pending = []

    def finish(self) -> None:
        self.finish_requested = True
        self._send_wake.set()
        self._state_changed()

    def cancel(self) -> None:
        """Stop at once: nothing more is read from the connection or delivered."""
        self.cancelled = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)  # wakes a reader blocked on this queue; it sees the cancel
        if self.conn is not None:
            self.conn.abort()
            self.synth.pool.discard(self.conn)
            self.conn = None
        self.task.cancel()

    # -- the task -----------------------------------------------------------
    def _put(self, item: _QueueItem) -> None:
        if not self.cancelled:
            self.delivered = self.delivered or item is not None
            self.queue.put_nowait(item)

    #: A pooled connection that died while idle is replaced this many times.
    STALE_RETRIES = 2

    def _rejects_flush(self, error: CosyVoiceError) -> bool:
        """True when ``error`` is the server failing the task in answer to a flush.

        A flush was sent and nothing of the task's output (a result event or
        audio) came since; the error is the kind a server that does not know
        the message answers with (not a timeout, throttling, credentials or a
        voice/model refusal).
        """
        if self.session is None or not self.session.protocol.flush_outstanding or self.cancelled:
            return False
        if type(error) is ServerError:
            return True
        return (
            isinstance(error, InvalidParameterError)
            and not error.permanent
            and not any(isinstance(error, cls) for cls in _NOT_ABOUT_FLUSH)
        )

    async def _run(self) -> None:
        try:
            stale_retries = 0
            flush_retried = False
            while True:
                try:
                    await self._run_task()
                    return
                except _Reprime:
                    # The primed task would hit the service's text timeout before any
                    # text came: a fresh task gives the caller the whole window.
                    logger.debug("primed task too old for the text window; starting a fresh one")
                    self._fresh_task = True
                    self._restart()
                except (ConnectionClosed, OSError):
                    malformed = self.conn is not None and framing_error(self.conn.ws) is not None
                    if malformed or not self.reused or self.delivered or stale_retries == self.STALE_RETRIES:
                        raise
                    stale_retries += 1
                    # The pooled connection died while idle and nothing reached the
                    # caller yet: replay the task on another connection.
                    logger.debug("pooled connection was dead; retrying the task on another")
                    self._restart()
                except CosyVoiceError as error:
                    if flush_retried or not self._rejects_flush(error):
                        raise
                    flush_retried = True
                    self.synth._flush_rejected(error)
                    if self.delivered:
                        raise
                    # Nothing reached the caller: say the utterance again, without flushes.
                    self._restart()
        except asyncio.CancelledError:
            if not self.cancelled:  # not the stream's cancel(): the synthesizer was closed
                self._put(TaskCancelledError("the synthesizer was closed (aclose()) before the task ended"))
            raise
        except CosyVoiceError as error:
            self._put(error)
        except ConnectionClosed:
            assert self.conn is not None
            self._put(connection_lost(self.conn.ws, self.session.task_id if self.session else None))
        except OSError as exc:
            self._put(ConnectionLostError(f"network error: {exc}", code="ConnectionLost"))
        except Exception as exc:  # a bug must surface to the reader, never leave it waiting
            logger.exception("cosyvoice task failed unexpectedly")
            internal = CosyVoiceError(f"internal error: {type(exc).__name__}: {exc}", code="InternalError")
            internal.__cause__ = exc
            self._put(internal)
        finally:
            if self._reprime_timer is not None:
                self._reprime_timer.cancel()
            if self.conn is not None:  # the task did not end cleanly: never reuse
                self.synth.pool.discard(self.conn)
                self.conn = None

    def _restart(self) -> None:
        """Drop this attempt's connection and session; the next attempt replays the text."""
        if self._reprime_timer is not None:
            self._reprime_timer.cancel()
            self._reprime_timer = None
        if self.conn is not None:
            self.synth.pool.discard(self.conn)
            self.conn = None
        self.session = None
        self.pending = list(self.pushed)

    def _watch_primed(self, primed_at: float) -> None:
        """A primed task's text window started at ``primed_at``: replace it before it ends."""
        window = self.synth.timeouts.server_text
        due = primed_at + window - min(1.0, window / 4) - time.monotonic()
        self._reprime_timer = asyncio.get_running_loop().call_later(max(0.0, due), self._reprime_due)

    def _reprime_due(self) -> None:
        self._reprime_timer = None
        session = self._reading
        if session is None or self.has_text:
            return
        if session.protocol.state in (TaskState.STARTING, TaskState.STARTED):
            self._interrupt(_REPRIME)

    async def _run_task(self) -> None:
        # A primed connection holds a started plain-text task: SSML needs its own run-task.
        self.conn, reused = await self._acquire()
        acquire_time = time.monotonic() - self.requested_at
        self.reused = reused
        conn = self.conn
        conn.tasks_run += 1
        task_started_at = time.monotonic()
        if conn.primed is not None:
            session, conn.primed = conn.primed, None
            task_started_at = conn.primed_at
            if not self.has_text:
                self._watch_primed(task_started_at)
            session.set_output_rate(self.output_rate)
            session.start_metrics(
                requested_at=self.requested_at, connect_time=0.0, reused=True, acquire_time=acquire_time
            )
        else:
            session = self.synth._new_session(self.options, self.output_rate, ssml=self.ssml)
            session.start_metrics(
                requested_at=self.requested_at,
                connect_time=None if reused else conn.connect_time,
                reused=reused,
                acquire_time=acquire_time,
            )
            session.start()
        self.session = session
        self._replay(session)
        writer = asyncio.ensure_future(self._writer(conn, session))
        try:
            finished = await self._reader(conn, session)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
        self.conn = None
        if finished:
            try:
                await self.synth._recycle(conn)
            except BaseException:
                self.synth.pool.discard(conn)
                raise
        else:
            conn.primed = session  # nothing was said: keep the started task warm
            conn.primed_at = task_started_at  # its text window runs from its run-task
            self.synth.pool.release(conn)
            self._put(None)

    async def _acquire(self) -> tuple[Connection, bool]:
        fresh = self.ssml or self._fresh_task
        acquire = self.synth.pool.acquire(None if fresh else self.options)
        if not self.bound_acquire:
            return await acquire
        attempt = asyncio.ensure_future(acquire)
        try:
            done, _ = await asyncio.wait({attempt}, timeout=self.timeouts.connect)
        finally:
            if not attempt.done():
                attempt.cancel()
                # A connection handed over as the deadline passed must not leak.
                attempt.add_done_callback(self._discard_late)
        if not done:
            raise ClientTimeoutError(
                f"no connection within {self.timeouts.connect:g} s (pool wait, credentials and handshake)",
                code="ConnectTimeout",
            )
        return attempt.result()

    def _discard_late(self, attempt: asyncio.Future[tuple[Connection, bool]]) -> None:
        if not attempt.cancelled() and attempt.exception() is None:
            self.synth.pool.discard(attempt.result()[0])

    async def _writer(self, conn: Connection, session: TaskSession) -> None:
        while True:
            self._send_wake.clear()
            if self.finish_requested and self.has_text and not session.protocol.finish_requested:
                session.finish()
            for message in session.data_to_send():
                await conn.ws.send(message)
            await self._send_wake.wait()

    def _timeout(self, session: TaskSession) -> tuple[float, str]:
        timeouts = self.timeouts
        protocol = session.protocol
        if protocol.state is TaskState.STARTING:
            return timeouts.start, "the task to start"
        if not self.finish_requested:
            return timeouts.text, "server events while more text may come"
        if not self._audio_seen:
            return timeouts.first_audio, "the first audio"
        return timeouts.idle, "the rest of the audio"

    # The reader awaits ws.recv() directly: no task or future per message. A
    # watchdog timer (one TimerHandle, re-armed only when it fires or the state
    # changes) enforces the deadline, and finish()/abandon wake the reader by
    # interrupting its task with a reason it recognises.
    def _schedule_watchdog(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        session = self._reading
        if session is None:
            return
        timeout, _ = self._timeout(session)
        loop = asyncio.get_running_loop()
        self._watchdog = loop.call_at(self._last_activity + timeout, self._watchdog_fired)

    def _watchdog_fired(self) -> None:
        self._watchdog = None
        session = self._reading
        if session is None:
            return
        timeout, waiting_for = self._timeout(session)
        if asyncio.get_running_loop().time() < self._last_activity + timeout:
            self._schedule_watchdog()  # a message came since: not due yet
            return
        self._interrupt(
            ClientTimeoutError(
                f"no reply from the service within {timeout:g} s while waiting for {waiting_for}",
                code="ClientTimeout",
                task_id=session.task_id,
            )
        )

    def _interrupt(self, reason: CosyVoiceError | str) -> None:
        if self._reading is None or self.cancelled or self._interruption is not None:
            return
        self._interruption = reason
        self.task.cancel()

    def _state_changed(self) -> None:
        """finish() was called: an unused task is released, else the deadline changes."""
        session = self._reading
        if session is None:
            return
        if self.abandoned and session.protocol.state in (TaskState.STARTING, TaskState.STARTED):
            self._interrupt(_ABANDON)
        else:
            # The wait for the first audio starts now, not at the server's last message
            # (which may be long ago when the text came slowly).
            self._last_activity = asyncio.get_running_loop().time()
            self._schedule_watchdog()

    async def _reader(self, conn: Connection, session: TaskSession) -> bool:
        """Deliver the task's events; True when it finished, False when abandoned unused."""
        ws = conn.ws
        loop = asyncio.get_running_loop()
        self._reading = session
        self._last_activity = loop.time()
        self._audio_seen = False
        try:
            if self.abandoned and session.protocol.state in (TaskState.STARTING, TaskState.STARTED):
                return False
            self._schedule_watchdog()
            while True:
                try:
                    message = await ws.recv()
                except asyncio.CancelledError:
                    reason = self._interruption
                    if reason is None or self.cancelled:
                        raise
                    self._interruption = None
                    task = asyncio.current_task()
                    if task is not None and hasattr(task, "uncancel"):
                        task.uncancel()  # Python 3.11+: this cancellation was ours, and handled
                    if reason is _ABANDON:
                        return False
                    if reason is _REPRIME:
                        raise _Reprime() from None
                    assert isinstance(reason, CosyVoiceError)
                    raise reason from None
                now = time.monotonic()
                progress = session.protocol.progress
                if isinstance(message, str):
                    if logger.isEnabledFor(logging.DEBUG):
                        logger.debug("recv %s", server_text(message, 500))
                    state = session.protocol.state
                    events = session.receive_text(message, now)
                    if session.protocol.state is not state:
                        self._send_wake.set()  # task-started releases held messages
                else:
                    events = session.receive_bytes(message, now)
                    self._audio_seen = True
                if session.protocol.progress != progress:
                    # Only this task's own events and audio prove it alive: chatter
                    # (unknown events, other task ids) must not hold a dead task open.
                    self._last_activity = loop.time()
                finished = session.protocol.state is TaskState.FINISHED
                if finished:
                    # Before the caller hears of it: the next utterance waits for this connection.
                    self.synth.pool.expect_return(conn)
                for event in events:
                    self._put(event)
                if session.error is not None:
                    raise session.error
                if finished:
                    return True
        finally:
            self._reading = None
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None


_ABANDON = "abandon"
_REPRIME = "reprime"


class _Reprime(Exception):
    """The primed task's text window is running out before any text came."""


#: Failures that say something other than "this server does not take flush".
_NOT_ABOUT_FLUSH: tuple[type[CosyVoiceError], ...] = (
    VoiceModelMismatchError,
    InstructionError,
    TextLimitError,
    SSMLError,
)


class SynthesisStream:
    """One utterance: push text as it comes, iterate audio and word events.

    ``push_text`` takes fragments of any size (LLM tokens); the server
    segments sentences. ``flush()`` has everything pushed so far synthesized
    without waiting for more text: the protocol's flush, in the same task on
    the same connection, however often it is called. ``finish()`` says no
    more text comes; iteration ends after the last audio. ``cancel()`` stops
    at once: after it returns, not one more event is delivered.

    ``early_flush``: flush once, at the end of the first clause of the text
    (``cosyvoice_stream.clauses``) once it holds ``early_flush_min_characters``
    billable characters, so the first audio does not wait for the first
    sentence to end. A server that fails the task in answer to a flush turns
    flushing off for the synthesizer; the utterance is then said again
    without it when nothing was delivered yet.

    Each task ends with a ``SynthesisComplete`` carrying its metrics; word
    times are seconds from the start of the stream's audio and character
    offsets index the stream's text (all pushes concatenated).
    """

    def __init__(
        self,
        synth: StreamHost,
        options: SynthesisOptions,
        output_rate: int,
        *,
        ssml: bool = False,
        timeouts: Timeouts | None = None,
        early_flush: bool = False,
        early_flush_min_characters: int | None = None,
    ) -> None:
        self._synth = synth
        self._timeouts = timeouts
        self.options = options
        self.sample_rate = output_rate
        self._ssml = ssml
        self._runs: list[_TaskRun] = []
        self._current: _TaskRun | None = None
        self._read_index = 0
        self._audio_offset = 0.0  # seconds of audio of the runs already delivered
        self._text_length = 0
        self._held_space = ""
        self._finished = False
        self._cancelled = False
        self._changed = asyncio.Event()
        self._closed_error: CosyVoiceError | None = None
        self.metrics: list[TaskMetrics] = []
        self._first_clause: FirstClause | None = None
        if early_flush and not ssml:
            self._first_clause = (
                FirstClause()
                if early_flush_min_characters is None
                else FirstClause(early_flush_min_characters)
            )
        self._new_run()  # connect and start the task now, while text is on its way

    def _new_run(self) -> _TaskRun:
        run = _TaskRun(
            self._synth, self.options, self.sample_rate, self._ssml, self._text_length, self._timeouts
        )
        self._runs.append(run)
        self._current = run
        self._changed.set()
        return run

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _owner_closed(self) -> None:
        """The synthesizer was closed: no task will start; a reader waiting for one ends."""
        if not self._finished:
            self._finished = True
            self._current = None
            self._closed_error = TaskCancelledError("the synthesizer was closed (aclose())")
        self._changed.set()

    @property
    def billable_characters(self) -> int:
        """Billable characters so far: the service's figure for each completed task,
        the estimate of the text sent for the others (running, cancelled, failed)."""
        return sum(run.characters if run.billed is None else run.billed for run in self._runs)

    @property
    def task_ids(self) -> list[str]:
        return [run.session.task_id for run in self._runs if run.session is not None]

    def _check_open(self, what: str) -> None:
        if self._synth._closed:
            raise TaskCancelledError(f"{what} after the synthesizer was closed (aclose())")
        if self._cancelled:
            raise TaskCancelledError(f"{what} after cancel()")
        if self._finished:
            raise InvalidParameterError(
                f"{what} after finish(): the stream takes no more text", parameter="text"
            )

    def push_text(self, text: str) -> None:
        """Send a fragment of text (any size; split above the per-message limit)."""
        self._check_open("push_text()")
        if isinstance(text, str) and not text.strip():
            check_fragment(text, ssml=self._ssml, characters_sent=0, messages_sent=0)
            # Whitespace alone is held: a task must not start with nothing to say.
            self._held_space += text
            return
        run = self._current or self._new_run()
        if self._held_space:
            text = self._held_space + text
        clause = self._first_clause
        cut = None
        if clause is not None and self._synth.flush_supported:
            # The whole fragment is checked before it is looked into, or split.
            check_fragment(text, ssml=self._ssml, characters_sent=run.characters, messages_sent=run.messages)
            cut = clause.feed(text)
        if cut is not None:
            # The flush goes after the whitespace that follows the clause mark.
            while cut < len(text) and text[cut].isspace():
                cut += 1
            if is_ssml(text[cut:]):
                cut = len(text)  # a piece must never start like an SSML document: flush after it
        if cut is None:
            run.push(text)
        else:
            # The first clause is complete: send it, flush, then the rest of the fragment.
            if cut:
                run.push(text[:cut])
            run.flush()
            if cut < len(text):
                run.push(text[cut:])
        self._held_space = ""
        self._text_length += len(text)

    def flush(self) -> None:
        """Synthesize everything pushed so far now, without waiting for more text.

        The protocol's flush: the task goes on, on the same connection. Nothing
        is sent when nothing was pushed since the last flush, or when the
        server failed a task in answer to a flush (then audio waits for the
        sentence end, as with a server that ignores flushes).
        """
        self._check_open("flush()")
        if self._current is not None:
            self._current.flush()

    async def finish(self) -> None:
        """No more text: the service synthesizes what it holds, then the stream ends."""
        if self._cancelled or self._finished:
            return
        self._finished = True
        if self._current is not None:
            self._current.finish()
            self._current = None
        self._changed.set()

    async def cancel(self) -> None:
        """Stop now. After this returns no event of this stream is delivered."""
        if self._cancelled:
            return
        self._cancelled = True
        self._finished = True
        for run in self._runs:
            run.cancel()
        self._changed.set()
        await asyncio.gather(*(run.task for run in self._runs), return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel if still running (the stream's async-context exit)."""
        if not self._finished or self._read_index < len(self._runs):
            await self.cancel()

    async def __aenter__(self) -> SynthesisStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        while True:
            if self._cancelled:
                raise StopAsyncIteration
            if self._read_index >= len(self._runs):
                if self._closed_error is not None:
                    error, self._closed_error = self._closed_error, None
                    raise error
                if self._finished:
                    raise StopAsyncIteration
                self._changed.clear()
                await self._changed.wait()
                continue
            run = self._runs[self._read_index]
            item = await run.queue.get()
            if self._cancelled:
                raise StopAsyncIteration
            if item is None:
                self._read_index += 1
                continue
            if isinstance(item, CosyVoiceError):
                self._read_index = len(self._runs)
                self._finished = True
                self._closed_error = None  # one error ends the stream
                await self.cancel_remaining()
                raise item
            if isinstance(item, SynthesisComplete):
                self.metrics.append(item.metrics)
                run.billed = item.metrics.billable_characters
                self._audio_offset += item.metrics.audio_duration
                self._read_index += 1
                return item
            if isinstance(item, WordTimestamps) and (self._audio_offset or run.text_offset):
                item = replace(item, words=tuple(self._shift(w, run) for w in item.words))
            return item

    def _shift(self, word: WordTiming, run: _TaskRun) -> WordTiming:
        return replace(
            word,
            start=word.start + self._audio_offset,
            end=word.end + self._audio_offset,
            char_start=None if word.char_start is None else word.char_start + run.text_offset,
            char_end=None if word.char_end is None else word.char_end + run.text_offset,
        )

    async def cancel_remaining(self) -> None:
        for run in self._runs:
            if not run.task.done():
                run.cancel()
        await asyncio.gather(*(run.task for run in self._runs), return_exceptions=True)
