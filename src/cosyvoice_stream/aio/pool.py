"""Warm connections, reused across tasks and replaced before the server closes them."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from websockets.protocol import State

from ..options import SynthesisOptions
from .connection import Connection

Opener = Callable[[], Awaitable[Connection]]


@dataclass(frozen=True)
class PoolStats:
    opened: int
    reused: int
    primed_hits: int
    discarded: int
    idle: int
    in_use: int


class ConnectionPool:
    """Idle connections ready for the next task.

    * ``idle_ttl``: an idle connection is replaced after this many seconds,
      before the server's 60 s idle close could hit a task.
    * ``primed_ttl``: a connection holding a pre-started task (run-task sent
      ahead of time to take that round trip off the latency path) is closed
      after this many seconds, before the server's 23 s text timeout.
    * ``keep_warm``/``keep_warm_for``: how many idle connections to keep, and
      for how long after the last use.
    * ``acquire`` waits (at most ``opening_wait`` s) for a connection that is
      already being opened ahead of need instead of opening a second one.
    * ``prepare``: runs on every connection the pool opens ahead of need
      (prewarm, spares) before it joins the idle set; the synthesizer uses it
      to prime them with a started task.
    A connection is only ever returned here after its task finished cleanly;
    a cancelled or failed task's connection is closed, never reused.
    """

    def __init__(
        self,
        opener: Opener,
        *,
        max_idle: int = 4,
        idle_ttl: float = 50.0,
        primed_ttl: float = 18.0,
        keep_warm: int = 1,
        keep_warm_for: float = 300.0,
        prepare: Callable[[Connection], Awaitable[None]] | None = None,
        opening_wait: float = 30.0,
    ) -> None:
        self.opening_wait = opening_wait
        self.current_options: SynthesisOptions | None = None
        self._opener = opener
        self._prepare = prepare
        self.max_idle = max_idle
        self.idle_ttl = idle_ttl
        self.primed_ttl = primed_ttl
        self.keep_warm = keep_warm
        self.keep_warm_for = keep_warm_for
        self._idle: list[Connection] = []
        self._in_use: set[Connection] = set()
        self._returning: set[Connection] = set()  # task finished; being primed, then released
        self._background: set[asyncio.Task[None]] = set()
        self._maintainer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._last_used = -math.inf  # never used: keep nothing warm yet
        self._closed = False
        self._opening = 0
        self._opened = self._reused = self._primed_hits = self._discarded = 0

    @property
    def stats(self) -> PoolStats:
        return PoolStats(
            self._opened, self._reused, self._primed_hits, self._discarded, len(self._idle), len(self._in_use)
        )

    async def acquire(self, options: SynthesisOptions | None = None) -> tuple[Connection, bool]:
        """A connection for one task, and whether it was reused.

        Prefers a connection primed for ``options``, then any unprimed idle
        one; a connection primed for other options is closed.
        """
        self._check_open()
        self._last_used = time.monotonic()
        self._ensure_maintainer()
        self._prune()
        chosen = None
        # Most recently pooled first: spares age out and get replaced, busy ones stay hot.
        newest_first = self._idle[::-1]
        if options is not None:
            chosen = next(
                (c for c in newest_first if c.primed is not None and c.primed.options == options), None
            )
        if chosen is None:
            chosen = next((c for c in newest_first if c.primed is None), None)
        if chosen is None and newest_first:
            chosen = newest_first[0]
        if chosen is None and (self._opening or self._returning):
            # A spare is on its way (prewarm, keep_warm) or a finished task's connection is
            # coming back: either is ready sooner than a new connection.
            await self.wait_until(
                lambda pool: bool(pool._idle) or not (pool._opening or pool._returning), self.opening_wait
            )
            return await self.acquire(options)
        if chosen is not None:
            self._idle.remove(chosen)
            if chosen.primed is not None and (options is None or chosen.primed.options != options):
                self.discard(chosen)
                return await self._open_for_use()
            self._reused += 1
            if chosen.primed is not None:
                self._primed_hits += 1
            self._in_use.add(chosen)
            self._wake.set()
            return chosen, True
        return await self._open_for_use()

    async def _open_for_use(self) -> tuple[Connection, bool]:
        conn = await self._open()
        self._in_use.add(conn)
        self._wake.set()  # keep_warm may want a spare now
        return conn, False

    async def _open(self) -> Connection:
        conn = await self._opener()
        self._opened += 1
        if self._closed:
            await conn.close()
            self._check_open()
        return conn

    def expect_return(self, conn: Connection) -> None:
        """``conn``'s task has finished cleanly: it will be released shortly."""
        if conn in self._in_use:
            self._returning.add(conn)

    def release(self, conn: Connection) -> None:
        """Give back a connection whose task finished cleanly (or that holds a primed task)."""
        self._in_use.discard(conn)
        self._returning.discard(conn)
        conn.idle_since = time.monotonic()  # ``primed_at`` stays: the task's window runs from its run-task
        stale = conn.primed is not None and self.current_options not in (None, conn.primed.options)
        if self._closed or stale or not conn.usable or len(self._idle) >= self.max_idle:
            self.discard(conn)
            return
        self._idle.append(conn)
        self._wake.set()
        self._changed.set()
        self._ensure_maintainer()

    def discard(self, conn: Connection) -> None:
        """Close ``conn`` in the background; the caller does not wait for it."""
        self._in_use.discard(conn)
        self._returning.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        self._discarded += 1
        self._changed.set()
        self._wake.set()
        conn.abort() if not conn.open_ else self._spawn(conn.close())

    async def prewarm(self, count: int = 1) -> None:
        """Open (and prepare) connections until ``count`` are idle; errors propagate."""
        self._check_open()
        self._last_used = time.monotonic()
        self._ensure_maintainer()
        self._prune()
        missing = count - len(self._idle) - self._opening
        if missing <= 0:
            return
        self._opening += missing
        await asyncio.gather(*(self._open_ready() for _ in range(missing)))

    async def _open_ready(self) -> None:
        """Open and prepare a connection ahead of need, then pool it.

        The caller has counted it in ``_opening`` already (synchronously, so the
        maintainer never opens a second one for the same gap).
        """
        try:
            conn = await self._open()
            if self._prepare is not None:
                try:
                    await self._prepare(conn)
                except BaseException:
                    self.discard(conn)
                    raise
        finally:
            self._opening -= 1
            self._changed.set()
        self.release(conn)

    def set_current_options(self, options: SynthesisOptions) -> None:
        """The options new tasks will use: connections primed with others are closed
        (now, and when they come back), and spares primed anew replace them."""
        self.current_options = options
        stale = [c for c in self._idle if c.primed is not None and c.primed.options != options]
        for conn in stale:
            self.discard(conn)
        if stale:
            self._ensure_maintainer()

    async def wait_until(self, predicate: Callable[[ConnectionPool], bool], timeout: float) -> None:
        """Wait (at most ``timeout`` s) until ``predicate(pool)`` holds; checked on every change."""

        async def check() -> None:
            while not predicate(self):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(check(), timeout)

    @property
    def idle(self) -> tuple[Connection, ...]:
        return tuple(self._idle)

    async def aclose(self) -> None:
        self._closed = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        conns = list(self._idle) + list(self._in_use)
        self._idle.clear()
        self._in_use.clear()
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    # -- internals ------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            from ..errors import CosyVoiceError

            raise CosyVoiceError("the synthesizer was closed (aclose()); create a new one")

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _prune(self) -> None:
        # Runs on every acquire and every wake of the maintainer, over every idle
        # connection: the test is written out (not unusable, not past its
        # time to live) rather than calls per connection: a pass costs a third.
        now = time.monotonic()
        primed_ttl, idle_ttl, open_ = self.primed_ttl, self.idle_ttl, State.OPEN
        expired = [
            c
            for c in self._idle
            if not c.reusable
            or c.ws.protocol.state is not open_
            or (now - c.primed_at > primed_ttl if c.primed is not None else now - c.idle_since > idle_ttl)
        ]
        for conn in expired:
            self.discard(conn)

    def _ensure_maintainer(self) -> None:
        if self._maintainer is None or self._maintainer.done():
            self._maintainer = asyncio.ensure_future(self._maintain())

    async def _maintain(self) -> None:
        """Replace idle connections before they expire; keep ``keep_warm`` ready while in use."""
        while not self._closed:
            self._prune()
            now = time.monotonic()
            wanted = self.keep_warm if now - self._last_used < self.keep_warm_for else 0
            missing = wanted - len(self._idle) - self._opening
            for _ in range(max(0, missing)):
                self._opening += 1
                self._spawn(self._open_spare())
            deadlines = [
                (c.primed_at + self.primed_ttl) if c.primed is not None else (c.idle_since + self.idle_ttl)
                for c in self._idle
            ]
            if wanted:
                deadlines.append(self._last_used + self.keep_warm_for)
            if not deadlines and not self._in_use:
                self._maintainer = None
                return
            timeout = max(0.05, min(deadlines) - now + 0.01) if deadlines else None
            self._wake.clear()
            if timeout is None:
                await self._wake.wait()
                continue
            # The deadline sets the event itself: one timer per wait, where asyncio.wait_for()
            # would add a task and its own timer (this loop wakes on every acquire and release).
            timer = asyncio.get_running_loop().call_later(timeout, self._wake.set)
            try:
                await self._wake.wait()
            finally:
                timer.cancel()

    async def _open_spare(self) -> None:
        try:
            await self._open_ready()
        except Exception:  # a spare is best effort; the next acquire reports errors
            return
