"""One WebSocket connection to the service (asyncio, ``websockets``)."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.protocol import State

from ..endpoint import Credentials, is_loopback
from ..errors import ClientTimeoutError, ConnectionLostError, CosyVoiceError, ProtocolError
from ..protocol import error_from_handshake, handshake_headers
from ..redact import protocol_logger, server_text
from ..version import __version__

if TYPE_CHECKING:
    from ..session import TaskSession

logger = logging.getLogger("cosyvoice_stream")

USER_AGENT = f"cosyvoice-stream/{__version__}"
# Audio frames are small, but a misbehaving server must not exhaust memory.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Timeouts:
    """Client-side deadlines in seconds; every wait is bounded by one of them.

    ``connect``: TCP+TLS+WebSocket handshake. ``start``: run-task to
    task-started. ``first_audio``: finish (no more text) to the first audio.
    ``idle``: longest silence from the server once audio flows or the task is
    finishing. ``text``: longest silence while the caller may still send text
    (the server itself fails the task after 23 s without text).
    ``server_text``: that server-side window (the service's 23 s). A task
    started ahead of time (prestart) is replaced by a fresh one before it
    runs out, so a stream always gets the whole window for its first text.
    """

    connect: float = 10.0
    start: float = 10.0
    first_audio: float = 15.0
    idle: float = 20.0
    text: float = 30.0
    close: float = 2.0
    server_text: float = 23.0

    def __post_init__(self) -> None:
        for name in ("connect", "start", "first_audio", "idle", "text", "close", "server_text"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                from ..errors import InvalidParameterError

                raise InvalidParameterError(
                    f"timeouts.{name}={value!r} is invalid: expected seconds in (0, 3600]",
                    parameter=f"timeouts.{name}",
                )


class Connection:
    """A connected WebSocket plus what the pool needs to know about it."""

    def __init__(self, ws: ClientConnection, connect_time: float) -> None:
        self.ws = ws
        self.connect_time = connect_time
        self.created_at = time.monotonic()
        self.idle_since = self.created_at
        self.tasks_run = 0
        self.primed: TaskSession | None = None  # a task already started here
        self.primed_at = 0.0
        self.reusable = True

    @classmethod
    async def open(
        cls, url: str, credentials: Credentials, timeouts: Timeouts, workspace: str | None = None
    ) -> Connection:
        started = time.monotonic()
        host = urlsplit(url).hostname
        # Not asyncio.wait_for: on Python < 3.12 a cancellation that races with
        # the handshake's completion loses the connection it just opened.
        attempt = asyncio.ensure_future(cls._connect(url, credentials, timeouts, workspace, host))
        try:
            done, _ = await asyncio.wait({attempt}, timeout=timeouts.connect)
        except asyncio.CancelledError:
            attempt.cancel()
            attempt.add_done_callback(_abort_if_connected)
            raise
        if not done:
            attempt.cancel()
            attempt.add_done_callback(_abort_if_connected)
            raise ClientTimeoutError(
                f"could not connect to {host} within {timeouts.connect:g} s (credentials and handshake)",
                code="ConnectTimeout",
            )
        try:
            ws = attempt.result()
        except InvalidStatus as exc:
            response = exc.response
            raise error_from_handshake(response.status_code, bytes(response.body or b"")) from None
        except ssl.SSLCertVerificationError as exc:
            # The certificate will not verify on the next attempt either.
            raise ConnectionLostError(
                f"could not connect to {host}: the TLS certificate did not verify: {exc}",
                code="TLSVerifyFailed",
                retryable=False,
                permanent=True,
            ) from None
        except (OSError, InvalidHandshake, websockets.exceptions.WebSocketException) as exc:
            raise ConnectionLostError(
                f"could not connect to {host}: {type(exc).__name__}: {exc}", code="ConnectFailed"
            ) from None
        return cls(ws, time.monotonic() - started)

    @staticmethod
    async def _connect(
        url: str, credentials: Credentials, timeouts: Timeouts, workspace: str | None, host: str | None
    ) -> ClientConnection:
        token = await credentials.token()
        headers = handshake_headers(token, workspace=workspace) if token else {}
        return await connect(
            url,
            additional_headers=headers,
            user_agent_header=USER_AGENT,
            compression=None,
            max_size=MAX_MESSAGE_BYTES,
            open_timeout=None,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=timeouts.close,
            proxy=None if is_loopback(host) else True,
            logger=protocol_logger(),
            create_connection=_ClientConnection,
        )

    @property
    def open_(self) -> bool:
        return self.ws.state is State.OPEN

    @property
    def usable(self) -> bool:
        return self.reusable and self.ws.state is State.OPEN

    async def close(self, timeout: float = 2.0) -> None:
        """Close politely within ``timeout``, then abort the transport."""
        self.reusable = False
        try:
            await asyncio.wait_for(self.ws.close(), timeout=timeout)
        except (asyncio.TimeoutError, OSError, websockets.exceptions.WebSocketException):
            pass
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop the connection at once: nothing more is read from it."""
        self.reusable = False
        transport = self.ws.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


#: Size of the buffer the transport reads into (asyncio's own per-read size).
_READ_BUFFER_BYTES = 256 * 1024


class _ReadBuffer(threading.local):
    """One read buffer per thread (each event loop runs in one thread), shared by its connections."""

    def __init__(self) -> None:
        self.view = memoryview(bytearray(_READ_BUFFER_BYTES))


_read_buffer = _ReadBuffer()


class _ClientConnection(ClientConnection, asyncio.BufferedProtocol):
    """A client connection that ends at once when the WebSocket is over.

    ``websockets`` keeps ``recv()`` waiting for the server's TCP close after a
    close frame arrived, or after a malformed frame made it fail the
    connection. Nothing more can come on such a connection, so the transport
    is aborted right away: the reader learns of it now, with the close code
    (or the framing error) intact, instead of when a deadline passes.

    It is a buffered protocol: the transport reads into one preallocated
    buffer (``recv_into``; over TLS, the decrypted bytes too) and only what
    arrived is copied out. A plain protocol's transport calls ``recv(256 KiB)``,
    which allocates and releases 256 KiB for every read: about 14 us per read,
    the largest single cost of a busy client. The bytes handed on are the same.
    """

    def get_buffer(self, sizehint: int) -> memoryview:
        return _read_buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        # Copied out at once: the buffer is read into again by the next read of any connection.
        self.data_received(bytes(_read_buffer.view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        protocol = self.protocol
        if protocol.close_rcvd is not None or (
            # framing_error() only when a failure is recorded at all: this runs for every read.
            (protocol.parser_exc is not None or self.connection_exc is not None)
            and framing_error(self) is not None
        ):
            self._abort()

    def set_connection_exc(self, exc: BaseException | None) -> None:
        super().set_connection_exc(exc)
        if isinstance(exc, UnicodeDecodeError):
            # Invalid UTF-8 is found when recv() decodes the message; once the
            # close frame saying so is written, stop waiting for the server.
            asyncio.get_running_loop().call_soon(self._abort)

    def _abort(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()


def _abort_if_connected(attempt: asyncio.Future[ClientConnection]) -> None:
    """A connect attempt abandoned by its caller: drop what it opened, if anything."""
    if attempt.cancelled() or attempt.exception() is not None:
        return
    transport = attempt.result().transport
    if transport is not None:
        transport.abort()


def framing_error(ws: ClientConnection) -> BaseException | None:
    """The malformed frame that ended ``ws``, if that is what ended it (not a mere EOF)."""
    for failure in (ws.protocol.parser_exc, ws.connection_exc):
        if isinstance(failure, _FRAMING):
            return failure
    return None


_FRAMING = (websockets.exceptions.ProtocolError, websockets.exceptions.PayloadTooBig, UnicodeDecodeError)


def describe_close(ws: ClientConnection) -> str:
    rcvd = ws.protocol.close_rcvd
    if rcvd is None:
        return "the connection dropped without a close frame"
    reason = f", {server_text(rcvd.reason, 200)}" if rcvd.reason else ""
    return f"the server closed the connection (code {rcvd.code}{reason})"


def connection_lost(ws: ClientConnection, task_id: str | None) -> CosyVoiceError:
    """The error for a connection that ended before its task did.

    A frame the WebSocket layer refused (bad framing, a masked server frame,
    invalid UTF-8, over ``MAX_MESSAGE_BYTES``) is the server breaking the
    protocol: ``ProtocolError``, not retryable. Otherwise the connection was
    lost: ``ConnectionLostError`` with the server's close code and reason.
    """
    failure = framing_error(ws)
    if failure is not None:
        return ProtocolError(
            f"the server broke the WebSocket protocol: {type(failure).__name__}:"
            f" {server_text(str(failure), 200)}",
            code="WebSocketProtocol",
            task_id=task_id,
            retryable=False,
        )
    rcvd = ws.protocol.close_rcvd
    return ConnectionLostError(
        f"{describe_close(ws)} before the task ended",
        code="ConnectionLost",
        task_id=task_id,
        close_code=None if rcvd is None else rcvd.code,
        close_reason=None if rcvd is None else server_text(rcvd.reason, 200),
    )
