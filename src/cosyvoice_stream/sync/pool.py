"""``SpeechSynthesizerObjectPool``: the SDK's pool of pre-connected synthesizers."""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import websocket

from ..aio.connection import Timeouts
from ..errors import CosyVoiceError, InvalidParameterError
from ..options import AudioFormat
from ..voices import DEFAULT_MODEL, DEFAULT_VOICE
from ._run import open_websocket
from .callback import ResultCallback
from .errors import InvalidTaskError, as_request_failure
from .synthesizer import SpeechSynthesizer, _usable, close_quietly

logger = logging.getLogger("cosyvoice_stream.sync")

#: The SDK's bounds of ``max_size``.
MAX_POOL_SIZE = 100


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
    Extra keyword-only arguments: ``api_key``, ``timeouts``, ``idle_ttl``.
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
        self._timeouts = self._template._timeouts
        self.max_size = max_size
        self.idle_ttl = float(idle_ttl)
        self._idle: list[tuple[websocket.WebSocket, float]] = []  # (connection, pooled at)
        self._borrowed: weakref.WeakSet[SpeechSynthesizer] = weakref.WeakSet()
        self._changed = threading.Condition()
        self._closed = False
        try:
            for _ in range(max_size):
                self._idle.append((self._connect(), time.monotonic()))
        except BaseException:
            for ws, _ in self._idle:
                close_quietly(ws, self._timeouts.close)
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
        with self._changed:
            if self._closed:
                raise InvalidTaskError("borrow_synthesizer() after shutdown(): the pool is closed")
            warm = self._idle.pop()[0] if self._idle else None
            self._borrowed.add(synthesizer)
            self._changed.notify_all()  # the maintainer may open a replacement
        if warm is None:
            logger.warning("SpeechSynthesizerObjectPool is exhausted: the synthesizer connects on demand")
        synthesizer._pool = self
        synthesizer._warm = warm
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
        synthesizer.close()  # a running task is cut: nothing of it reaches the next borrower
        warm, synthesizer._warm, synthesizer._pool = synthesizer._warm, None, None
        with self._changed:
            keep = warm is not None and not self._closed and len(self._idle) < self.max_size and _usable(warm)
            if keep and warm is not None:
                self._idle.append((warm, time.monotonic()))
                self._changed.notify_all()
            closed = self._closed
        if warm is not None and not keep:
            close_quietly(warm, self._timeouts.close)
        return not closed

    def shutdown(self) -> None:
        """Close every pooled connection and stop the pool (thread-safe; a second call does nothing).

        Synthesizers still borrowed keep working on connections of their own.
        """
        with self._changed:
            if self._closed:
                return
            self._closed = True
            idle = [ws for ws, _ in self._idle]
            self._idle.clear()
            borrowed = list(self._borrowed)
            self._changed.notify_all()
        for synthesizer in borrowed:
            warm, synthesizer._warm = synthesizer._warm, None
            if warm is not None:
                idle.append(warm)  # lent out but never used: the pool's to close
        for ws in idle:
            close_quietly(ws, self._timeouts.close)
        if threading.current_thread() is not self._maintainer:
            self._maintainer.join(self._timeouts.connect + self._timeouts.close)

    # -- upkeep ---------------------------------------------------------------
    def _maintain(self) -> None:
        """Replace connections idle for ``idle_ttl`` s or closed by the server (lent ones come back on return)."""
        while True:
            with self._changed:
                if self._closed:
                    return
                now = time.monotonic()
                stale = [(ws, at) for ws, at in self._idle if now - at >= self.idle_ttl or not _usable(ws)]
                for item in stale:
                    self._idle.remove(item)
                missing = self.max_size - len(self._idle) - len(self._borrowed)
                if not stale and missing <= 0:
                    next_at = min((at + self.idle_ttl for _, at in self._idle), default=None)
                    self._changed.wait(None if next_at is None else max(next_at - now, 0.05))
                    continue
            for ws, _ in stale:
                close_quietly(ws, self._timeouts.close)
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
                    if self._closed or len(self._idle) >= self.max_size:
                        drop = True
                    else:
                        drop = False
                        self._idle.append((ws, time.monotonic()))
                if drop:
                    close_quietly(ws, self._timeouts.close)
                    return
