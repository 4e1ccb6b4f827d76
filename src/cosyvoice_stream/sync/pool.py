"""``SpeechSynthesizerObjectPool``: the SDK's pool of pre-connected synthesizers."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import websocket

from ..aio.connection import Timeouts
from ..errors import CosyVoiceError, InvalidParameterError
from ..events import SynthesisComplete
from ..options import AudioFormat, SynthesisOptions
from ..protocol import TaskState, new_task_id
from ..session import TaskSession
from ..voices import DEFAULT_MODEL, DEFAULT_VOICE
from ._run import DeadlineSocket, open_websocket
from .callback import ResultCallback
from .errors import InvalidTaskError, as_request_failure
from .synthesizer import SpeechSynthesizer, WarmConnection, _usable, close_quietly

logger = logging.getLogger("cosyvoice_stream.sync")

#: The SDK's bounds of ``max_size``.
MAX_POOL_SIZE = 100
#: How many sets of task parameters the pool remembers for priming borrowed synthesizers.
SEEN_KEYS = 16

_Key = tuple[SynthesisOptions, bool]  # a task's parameters and whether it is SSML (call())


def _key_of(warm: WarmConnection) -> _Key | None:
    """The parameters ``warm``'s primed task was started with (None when it holds none)."""
    primed = warm.primed
    return None if primed is None else (primed.options, primed.protocol.ssml)


class SpeechSynthesizerObjectPool:
    """The SDK's object pool: synthesizers whose connection is already open.

    ``max_size`` connections (1..100) are opened here, at construction, to
    ``url`` (else the module setting / environment, as for
    ``SpeechSynthesizer``) with ``headers`` and ``workspace``.
    ``borrow_synthesizer(...)`` returns a ``SpeechSynthesizer`` with the given
    model, voice and parameters holding one of them, so its first task pays
    no connection set-up; its later tasks reuse the same connection.
    ``return_synthesizer(s)`` takes the connection back (only a connection
    whose last task finished cleanly: a task that failed, was cut or is still
    running never leaves audio on a pooled connection); ``shutdown()``
    closes everything.

    Prestarted tasks (``prestart=True``): a connection that comes back after
    a cleanly finished task gets the run-task of that borrow's first task at
    once, and a synthesizer borrowed with parameters the pool has seen gets
    it when borrowed (one more idle connection is primed for them as a
    spare), so the next task with exactly these parameters (every run-task
    parameter, and ``call()`` versus ``streaming_call()``) starts with its
    task already started: no run-task round trip. A primed task that does not
    fit the borrower's task is never used: the background thread ends it (the
    cancel directive, drained to task-finished), off the caller's path, and
    the caller takes another connection. A primed task is used only within
    ``Timeouts.server_text * 18 / 23`` s of its run-task and re-primed by
    then, lent out or not, so it never meets the service's text timeout.

    When every connection is lent out, a borrowed synthesizer connects on
    demand (as in the SDK). A background thread replaces idle connections
    after ``idle_ttl`` seconds, before the service's 60 s idle close, and
    drops any that the server closed.

    Differences from the SDK (see docs/sdk-api.md): each pool is its own
    object (the SDK's is a process-wide singleton whose constructor re-opens
    connections every time it is called); ``return_synthesizer`` raises
    ``InvalidParameterError`` for an object that was not borrowed from this
    pool (the SDK logs and returns False) and returns True when taken back;
    ``borrow_synthesizer`` refuses an endpoint (``url``, ``workspace``,
    ``headers``) other than the pool's (the SDK ignores them).
    Extra keyword-only arguments: ``api_key``, ``timeouts``, ``idle_ttl``,
    ``prestart``.
    """

    def __init__(
        self,
        max_size: int = 20,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
        workspace: str | None = None,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        idle_ttl: float = 50.0,
        prestart: bool = True,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or not 1 <= max_size <= MAX_POOL_SIZE:
            raise InvalidParameterError(
                f"max_size={max_size!r} is invalid: expected an int from 1 to {MAX_POOL_SIZE}",
                parameter="max_size",
            )
        if isinstance(idle_ttl, bool) or not isinstance(idle_ttl, (int, float)) or not 1 <= idle_ttl <= 55:
            raise InvalidParameterError(
                f"idle_ttl={idle_ttl!r} is invalid: expected seconds in [1, 55]"
                " (the service closes idle connections after 60 s)",
                parameter="idle_ttl",
            )
        # A synthesizer of the pool's endpoint: it validates and resolves url, key and headers once.
        self._template = SpeechSynthesizer(
            DEFAULT_MODEL,
            DEFAULT_VOICE,
            url=url,
            headers=headers,
            workspace=workspace,
            api_key=api_key,
            timeouts=timeouts,
        )
        self._url_argument = url
        self._headers = dict(headers) if headers is not None else None
        self._workspace = workspace
        self._api_key = api_key
        if not isinstance(prestart, bool):
            raise InvalidParameterError(
                f"prestart={prestart!r} is invalid: expected True or False", parameter="prestart"
            )
        self._timeouts = self._template._timeouts
        self.max_size = max_size
        self.idle_ttl = float(idle_ttl)
        self.prestart = prestart
        #: A primed task is used, and re-primed, within this many seconds of its run-task:
        #: well before the service's text timeout (18 of 23 s, as the asyncio pool).
        self.primed_ttl = self._timeouts.server_text * 18 / 23
        self._idle: list[WarmConnection] = []
        # Primed tasks to end off the callers' path, and the parameters to prime anew with, if any.
        self._retiring: list[tuple[WarmConnection, _Key | None]] = []
        self._busy = 0  # connections being ended, re-primed or primed as spares, outside the idle list
        self._working: list[WarmConnection] = []  # those of them the background thread waits on
        self._seen: list[_Key] = []  # parameters of clean tasks, most recent last
        self._borrowed: weakref.WeakSet[SpeechSynthesizer] = weakref.WeakSet()
        self._changed = threading.Condition()
        self._closed = False
        try:
            for _ in range(max_size):
                self._idle.append(WarmConnection(self._connect(), time.monotonic()))
        except BaseException:
            for warm in self._idle:
                close_quietly(warm.ws, self._timeouts.close)
            raise
        self._maintainer = threading.Thread(target=self._maintain, name="cosyvoice-sync-pool", daemon=True)
        self._maintainer.start()

    def __repr__(self) -> str:
        return (
            f"SpeechSynthesizerObjectPool(max_size={self.max_size}, url={self._template.url!r},"
            f" idle={len(self._idle)}, closed={self._closed})"
        )

    @property
    def idle_connections(self) -> int:
        """Connections ready for the next borrower."""
        with self._changed:
            return len(self._idle)

    @property
    def primed_connections(self) -> int:
        """Idle connections holding a task started ahead of time."""
        with self._changed:
            return sum(1 for warm in self._idle if warm.primed is not None)

    def _connect(self) -> websocket.WebSocket:
        template = self._template
        try:
            return open_websocket(
                template.url, template._handshake_headers(), self._timeouts, template._redact
            )
        except CosyVoiceError as error:
            raise as_request_failure(error) from None

    # -- the SDK's API --------------------------------------------------------
    def borrow_synthesizer(
        self,
        model: str,
        voice: str,
        format: AudioFormat = AudioFormat.DEFAULT,
        volume: int = 50,
        speech_rate: float = 1.0,
        pitch_rate: float = 1.0,
        seed: int = 0,
        synthesis_type: int = 0,
        instruction: str | None = None,
        language_hints: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        callback: ResultCallback | None = None,
        workspace: str | None = None,
        url: str | None = None,
        additional_params: Mapping[str, Any] | None = None,
    ) -> SpeechSynthesizer:
        """A synthesizer with these parameters on a warm connection of the pool (thread-safe).

        The endpoint is the pool's: ``headers``, ``workspace`` and ``url``
        must be None or the pool's own. Give it back with
        ``return_synthesizer()`` once its task is over.
        """
        for name, given, own in (
            ("url", url, self._url_argument),
            ("workspace", workspace, self._workspace),
            ("headers", None if headers is None else dict(headers), self._headers),
        ):
            if given is not None and given != own:
                raise InvalidParameterError(
                    f"borrow_synthesizer({name}=...) differs from the pool's: a pool serves one endpoint;"
                    " create the pool with it",
                    parameter=name,
                )
        synthesizer = SpeechSynthesizer(
            model,
            voice,
            format,
            volume,
            speech_rate,
            pitch_rate,
            seed,
            synthesis_type,
            instruction,
            language_hints,
            self._headers,
            callback,
            self._workspace,
            self._template.url,
            None,
            additional_params,
            api_key=self._template._credentials.secret_values[0]
            if self._template._credentials.secret_values
            else self._api_key,
            timeouts=self._timeouts,
        )
        options = synthesizer._options
        with self._changed:
            if self._closed:
                raise InvalidTaskError("borrow_synthesizer() after shutdown(): the pool is closed")
            seen = next((key for key in reversed(self._seen) if key[0] == options), None)
            # With parameters seen, the kind of task (call() or streaming) the last borrower
            # started with is the one to expect; else any primed task for these parameters.
            warm = self._pick(options, None if seen is None else seen[1])
            if warm is None:
                # Only tasks primed for other parameters: one is ended in the background, to be
                # ready for a later task; this borrower is not kept waiting for it.
                other = next((w for w in reversed(self._idle) if w.primed is not None), None)
                if other is not None:
                    self._idle.remove(other)
                    self._retiring.append((other, seen if self.prestart else None))
            spare = None
            if seen is not None and self.prestart:
                # Parameters in use: a plain idle connection gets a task for them too, so that
                # a borrow right after this one finds a task whose task-started has arrived;
                # without a plain one, one primed for other parameters is turned over to them.
                spare = next((w for w in self._idle if w.primed is None), None)
                if spare is not None:
                    self._idle.remove(spare)
                    self._busy += 1
                elif not any(w.fits(*seen) for w in self._idle):
                    other = next((w for w in self._idle if w.primed is not None), None)
                    if other is not None:
                        self._idle.remove(other)
                        self._retiring.append((other, seen))
            self._borrowed.add(synthesizer)
            self._changed.notify_all()  # the maintainer may open a replacement
        if warm is None:
            logger.warning("SpeechSynthesizerObjectPool is exhausted: the synthesizer connects on demand")
        elif warm.primed is None and seen is not None and self.prestart and not self._prime(warm, *seen):
            close_quietly(warm.ws, self._timeouts.close)
            warm = None
        if spare is not None and seen is not None:
            primed = _usable(spare.ws) and self._prime(spare, *seen)
            with self._changed:
                self._busy -= 1
                keep = primed and not self._closed and len(self._idle) < self.max_size
                if keep:
                    self._idle.append(spare)
                self._changed.notify_all()
            if not keep:
                close_quietly(spare.ws, self._timeouts.close)
        if warm is not None and warm.primed is not None:
            synthesizer._next_task_id = warm.primed.task_id  # get_last_request_id(): the task it will run
        with self._changed:
            synthesizer._pool = self
            synthesizer._warm = warm
            self._changed.notify_all()  # a lent primed task is watched for its age too
        return synthesizer

    def return_synthesizer(self, synthesizer: SpeechSynthesizer) -> bool:
        """Give back a borrowed synthesizer; its connection serves the next borrower (thread-safe).

        A task still running is cut; its connection, like that of a task that
        failed or was cut, is closed rather than pooled. Returns True when
        the pool took the synthesizer back, False after ``shutdown()``.
        """
        if not isinstance(synthesizer, SpeechSynthesizer):
            raise InvalidParameterError(
                f"return_synthesizer() takes a SpeechSynthesizer borrowed from this pool,"
                f" got {type(synthesizer).__name__}",
                parameter="synthesizer",
            )
        with self._changed:
            if synthesizer not in self._borrowed or synthesizer._pool is not self:
                raise InvalidParameterError(
                    "return_synthesizer(): this synthesizer was not borrowed from this pool"
                    " (or was returned already)",
                    parameter="synthesizer",
                )
            self._borrowed.discard(synthesizer)
            # Its connection is neither lent nor idle until it is back below: counted as
            # busy meanwhile, so that the maintainer does not open a replacement for it.
            self._busy += 1
        synthesizer.close()  # a running task is cut: nothing of it reaches the next borrower
        warm, synthesizer._warm, synthesizer._pool = synthesizer._warm, None, None
        key = synthesizer._first_key  # set only by a task that finished cleanly on a pooled connection
        evicted: WarmConnection | None = None
        if warm is not None:
            if warm.primed is not None:
                usable = warm.ws.connected  # its task-started may be waiting in the socket
            else:
                usable = _usable(warm.ws)
                warm.since = time.monotonic()
                if usable and key is not None and self.prestart and not self._closed:
                    usable = self._prime(warm, *key)  # the next task with these parameters is started
        with self._changed:
            self._busy -= 1
            self._changed.notify_all()  # back, or gone: the maintainer may open a replacement
            if key is not None:
                self._remember(key)
            if warm is not None and warm.primed is not None and len(self._idle) >= self.max_size:
                # Full: a connection holding a started task is worth more than a plain one.
                plain = next((w for w in self._idle if w.primed is None), None)
                if plain is not None:
                    self._idle.remove(plain)
                    evicted = plain
            keep = warm is not None and usable and not self._closed and len(self._idle) < self.max_size
            if keep and warm is not None:
                self._idle.append(warm)
            closed = self._closed
        if warm is not None and not keep:
            close_quietly(warm.ws, self._timeouts.close)
        if evicted is not None:
            close_quietly(evicted.ws, self._timeouts.close)
        return not closed

    def shutdown(self) -> None:
        """Close every pooled connection and stop the pool (thread-safe; a second call does nothing).

        Synthesizers still borrowed keep working on connections of their own.
        """
        with self._changed:
            if self._closed:
                return
            self._closed = True
            idle = [warm.ws for warm in self._idle] + [warm.ws for warm, _ in self._retiring]
            self._idle.clear()
            self._retiring.clear()
            for busy in self._working:  # wakes the background thread out of a wait on the server
                sock = busy.ws.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
            for synthesizer in list(self._borrowed):
                warm, synthesizer._warm = synthesizer._warm, None
                if warm is not None:
                    idle.append(warm.ws)  # lent out but never used: the pool's to close
            self._changed.notify_all()
        for ws in idle:
            close_quietly(ws, self._timeouts.close)
        if threading.current_thread() is not self._maintainer:
            # The thread may be ending a primed task (bounded by timeouts.start) or connecting.
            self._maintainer.join(self._timeouts.connect + self._timeouts.start + self._timeouts.close)

    # -- prestarted tasks -------------------------------------------------------
    def _pick(self, options: SynthesisOptions, ssml: bool | None) -> WarmConnection | None:
        """Take the idle connection for a task (hold the lock): one primed for it, else an unprimed one.

        ``ssml`` None: either kind of task (at borrow time it is not known yet).
        """
        now = time.monotonic()
        newest_first = self._idle[::-1]
        # The oldest fitting primed task first: its task-started has most likely arrived
        # (a task primed a moment ago still makes the text wait for it), and it ages out first.
        chosen = min(
            (
                w
                for w in self._idle
                if w.primed is not None
                and now - w.primed_at < self.primed_ttl
                and w.fits(options, w.primed.protocol.ssml if ssml is None else ssml)
            ),
            key=lambda w: w.primed_at,
            default=None,
        )
        if chosen is None:
            chosen = next((w for w in newest_first if w.primed is None), None)
        if chosen is not None:
            self._idle.remove(chosen)
        return chosen

    def _take(self, options: SynthesisOptions, ssml: bool) -> WarmConnection | None:
        """Another idle connection for a borrowed synthesizer whose own did not fit its task."""
        with self._changed:
            if self._closed:
                return None
            warm = self._pick(options, ssml)
            self._changed.notify_all()
        return warm

    def _claim(self, synthesizer: SpeechSynthesizer) -> WarmConnection | None:
        """A borrowed synthesizer takes its connection for a task (under the lock the maintainer uses)."""
        with self._changed:
            warm, synthesizer._warm = synthesizer._warm, None
        return warm

    def _retire(self, warm: WarmConnection) -> None:
        """A primed task that will not be used: the background thread ends it (never the caller)."""
        with self._changed:
            if not self._closed:
                self._retiring.append((warm, None))
                self._changed.notify_all()
                return
        close_quietly(warm.ws, self._timeouts.close)

    def _remember(self, key: _Key) -> None:
        """Parameters of a clean task, for priming the next borrower with them (hold the lock)."""
        if key in self._seen:
            self._seen.remove(key)
        self._seen.append(key)
        del self._seen[:-SEEN_KEYS]

    def _prime(self, warm: WarmConnection, options: SynthesisOptions, ssml: bool) -> bool:
        """Send the run-task of a task with these parameters on the idle ``warm``; False if it failed.

        Only the send: its task-started is read by whoever uses the task
        (the synthesizer's reader, or ``_end``).
        """
        session = TaskSession(options, ssml=ssml)
        session.start()
        try:
            for message in session.data_to_send():
                warm.ws.send(message)
        except (OSError, websocket.WebSocketException):
            return False
        warm.primed, warm.primed_at = session, time.monotonic()
        return True

    def _end(self, warm: WarmConnection) -> bool:
        """End ``warm``'s primed task cleanly; True if the connection is clean afterwards.

        The SDK's cancel directive once task-started is in (a finish-task
        without any text is an error for the service), then task-finished.
        No text was sent, so no audio comes; anything else (a failure, a
        close, silence past ``timeouts.start``) means the connection is closed.
        """
        session, warm.primed = warm.primed, None
        guard = warm.ws.sock
        if session is None:
            return True
        if not isinstance(guard, DeadlineSocket):
            return False
        guard.deadline = time.monotonic() + self._timeouts.start
        protocol = session.protocol
        try:
            while True:
                if protocol.state is TaskState.STARTED:
                    protocol.cancel()
                for message in session.data_to_send():
                    warm.ws.send(message)
                opcode, frame = warm.ws.recv_data_frame(False)
                if opcode not in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                    return False  # a close
                data = frame.data
                text = opcode == websocket.ABNF.OPCODE_TEXT
                if text and isinstance(data, bytes):
                    data = data.decode("utf-8", "replace")
                received = session.receive_frame(data, time.monotonic(), text=text)
                if session.error is not None:
                    return False
                if any(isinstance(event, SynthesisComplete) for event in received.stream_events):
                    return _usable(warm.ws)
        except (OSError, websocket.WebSocketException, CosyVoiceError):
            return False
        finally:
            guard.deadline = None

    # -- upkeep ---------------------------------------------------------------
    def _maintain(self) -> None:
        """Upkeep of the idle connections, off every caller's path.

        Connections idle for ``idle_ttl`` s or closed by the server are
        replaced; primed tasks are re-primed before ``primed_ttl``; primed
        tasks that did not fit a borrower are ended. Lent ones come back on return.
        """
        while True:
            with self._changed:
                if self._closed:
                    return
                now = time.monotonic()
                stale: list[WarmConnection] = []
                work: list[tuple[WarmConnection, _Key | None]] = []  # (connection, prime it anew with)
                for warm in list(self._idle):
                    if warm.primed is not None:
                        if not warm.ws.connected:
                            stale.append(warm)
                        elif now - warm.primed_at >= self.primed_ttl:
                            work.append((warm, _key_of(warm)))
                    elif now - warm.since >= self.idle_ttl or not _usable(warm.ws):
                        stale.append(warm)
                for warm in stale + [w for w, _ in work]:
                    self._idle.remove(warm)
                # A primed task lent out and not used in time is taken back the same way:
                # the borrower's first task then takes another connection (see _connection).
                for synthesizer in list(self._borrowed):
                    lent = synthesizer._warm
                    if (
                        lent is not None
                        and lent.primed is not None
                        and now - lent.primed_at >= self.primed_ttl
                    ):
                        synthesizer._warm = None
                        if synthesizer._next_task_id == lent.primed.task_id:
                            synthesizer._next_task_id = new_task_id()  # that id is being ended here
                        work.append((lent, _key_of(lent)))
                work += self._retiring
                self._retiring.clear()
                self._busy += len(work)
                self._working = [warm for warm, _ in work]
                missing = self.max_size - len(self._idle) - len(self._borrowed) - self._busy
                if not stale and not work and missing <= 0:
                    due = [
                        w.primed_at + self.primed_ttl
                        for w in (s._warm for s in self._borrowed)
                        if w is not None and w.primed is not None
                    ]
                    next_at = min(
                        due
                        + [
                            w.primed_at + self.primed_ttl if w.primed is not None else w.since + self.idle_ttl
                            for w in self._idle
                        ],
                        default=None,
                    )
                    self._changed.wait(None if next_at is None else max(next_at - now, 0.05))
                    continue
            for warm in stale:
                close_quietly(warm.ws, self._timeouts.close)
            for warm, key in work:
                clean = self._end(warm)
                if clean and key is not None and self.prestart:
                    clean = self._prime(warm, *key)
                warm.since = time.monotonic()
                with self._changed:
                    self._busy -= 1
                    keep = clean and not self._closed and len(self._idle) < self.max_size
                    if keep:
                        self._idle.append(warm)
                        self._changed.notify_all()
                if not keep:
                    close_quietly(warm.ws, self._timeouts.close)
            for _ in range(max(missing, 0)):
                try:
                    ws = self._connect()
                except CosyVoiceError as error:
                    logger.warning("SpeechSynthesizerObjectPool could not open a connection: %s", error)
                    with self._changed:  # retry later, not in a tight loop
                        if not self._closed:
                            self._changed.wait(self.idle_ttl / 10)
                    break
                with self._changed:
                    drop = self._closed or len(self._idle) >= self.max_size
                    if not drop:
                        self._idle.append(WarmConnection(ws, time.monotonic()))
                if drop:
                    close_quietly(ws, self._timeouts.close)
                    break
