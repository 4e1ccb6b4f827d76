"""One task on its own connection: a socket reader thread and a callback dispatcher thread.

The reader only reads frames, feeds them to the sans-I/O ``TaskSession`` and
puts what the caller must see in a queue; the dispatcher takes them from the
queue and calls the ``ResultCallback``. A callback that blocks therefore
never stops the socket from being read (and pinged).

Both threads are non-daemon, like the SDK's waiting thread: a script whose
main thread returns right after ``call()`` with a callback still gets all its
callbacks. Both always end: every wait of the reader is bounded by a
deadline, and the reader always queues the dispatcher's end marker.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import websocket
from websocket._abnf import frame_buffer

from ..aio.connection import MAX_MESSAGE_BYTES, Timeouts
from ..endpoint import is_loopback
from ..errors import (
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    ProtocolError,
    TaskCancelledError,
)
from ..events import AudioChunk, StreamEvent, SynthesisComplete
from ..protocol import ResultGenerated, TaskFailed, TaskStarted, TaskState, error_from_handshake
from ..redact import RedactingFilter
from ..session import TaskSession
from .callback import ErrorMessage
from .errors import WaitTimeoutError, as_request_failure

logger = logging.getLogger("cosyvoice_stream.sync")
_TASK_DEADLINE = "the end of the task (timeout_millis)"

# websocket-client dumps the handshake (Authorization included) when its trace
# is enabled: keep bearer values out of its records too.
_ws_logger = logging.getLogger("websocket")
if not any(isinstance(f, RedactingFilter) for f in _ws_logger.filters):
    _ws_logger.addFilter(RedactingFilter())

Redactor = Callable[[str], str]
_Item = tuple[str, tuple[Any, ...]] | None


@dataclass(frozen=True)
class Liveness:
    """How a silent connection is found out: ping after ``interval`` s of silence, give up ``timeout`` s later."""

    interval: float | None = 10.0
    timeout: float = 10.0


class DeadlineSocket:
    """A socket whose reads end at a wall-clock ``deadline``, however slowly the bytes trickle in.

    A socket timeout bounds one read: a server sending one byte every 0.2 s
    never trips it. websocket-client reads frames and the handshake answer
    through ``recv``; here every read waits only until ``deadline``
    (monotonic seconds, or a callable returning them, checked again at least
    every ``SLICE`` s so a deadline that moves, e.g. when the caller finishes
    the task, is honoured in the middle of a frame; None: the plain per-read
    timeout). ``expired`` tells a timeout by deadline from any other. Writes
    keep the per-read timeout: the reader's deadline must not cut the caller's sends.
    """

    SLICE = 0.25

    def __init__(self, sock: socket.socket, timeout: float | None) -> None:
        self.raw = sock
        self.deadline: float | Callable[[], float] | None = None
        self.expired = False
        self._timeout = timeout

    def _deadline(self) -> float | None:
        deadline = self.deadline
        return deadline() if callable(deadline) else deadline

    def recv(self, bufsize: int) -> bytes:
        deadline = self._deadline()
        if deadline is None:
            self.raw.settimeout(self._timeout)
            return self.raw.recv(bufsize)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.expired = True
                raise TimeoutError("deadline passed")
            self.raw.settimeout(min(remaining, self.SLICE))
            try:
                return self.raw.recv(bufsize)
            except TimeoutError:
                deadline = self._deadline() or deadline  # it may have moved meanwhile

    def send(self, data: bytes) -> int:
        self.raw.settimeout(self._timeout)
        return self.raw.send(data)

    def sendall(self, data: bytes) -> None:
        self.raw.settimeout(self._timeout)
        self.raw.sendall(data)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout
        self.raw.settimeout(timeout)

    def gettimeout(self) -> float | None:
        # websocket-client asks before every read and write (0 would mean non-blocking);
        # the deadline is enforced in recv() itself.
        return self._timeout

    def __getattr__(self, name: str) -> Any:
        return getattr(self.raw, name)


class _CheckedFrames(frame_buffer):
    """websocket-client's frame reader, refusing what a server must never send.

    A masked frame (RFC 6455 5.1) and a frame longer than ``MAX_MESSAGE_BYTES``
    (which websocket-client would buffer whole) are protocol errors at once,
    before any payload is read.
    """

    def recv_header(self) -> None:
        super().recv_header()
        if self.has_mask():
            raise websocket.WebSocketProtocolException("the server sent a masked frame")

    def recv_length(self) -> None:
        super().recv_length()
        if self.length is not None and self.length > MAX_MESSAGE_BYTES:
            raise websocket.WebSocketPayloadException(
                f"the server sent a frame of {self.length} bytes (limit {MAX_MESSAGE_BYTES})"
            )


def _proxied(host: str, secure: bool) -> bool:
    """Whether websocket-client would go through a proxy from the environment for ``host``."""
    from websocket._url import get_proxy_info

    return bool(get_proxy_info(host, secure)[0])


def _wait_io(sock: socket.socket, write: bool, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_WRITE if write else selectors.EVENT_READ)
        if remaining <= 0 or not selector.select(remaining):
            raise TimeoutError("deadline passed")


def _open_socket(host: str, port: int, secure: bool, deadline: float) -> socket.socket:
    """TCP (and TLS) to ``host``, all of it within ``deadline``."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("deadline passed")
    sock = socket.create_connection((host, port), timeout=remaining)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not secure:
            return sock
        # websocket-client's own defaults: the system store (SSL_CERT_FILE/SSL_CERT_DIR
        # honoured), or its WEBSOCKET_CLIENT_CA_BUNDLE; hostname checked.
        context = ssl.create_default_context()
        bundle = os.environ.get("WEBSOCKET_CLIENT_CA_BUNDLE")
        if bundle and os.path.isfile(bundle):
            context.load_verify_locations(cafile=bundle)
        elif bundle and os.path.isdir(bundle):
            context.load_verify_locations(capath=bundle)
        tls = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
        tls.setblocking(False)
        while True:  # the handshake, record by record, within the deadline
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                _wait_io(tls, False, deadline)
            except ssl.SSLWantWriteError:
                _wait_io(tls, True, deadline)
        return tls
    except BaseException:
        sock.close()
        raise


def open_websocket(
    url: str,
    headers: dict[str, str],
    timeouts: Timeouts,
    redact: Redactor,
    *,
    limit_at: float | None = None,
) -> websocket.WebSocket:
    """Connect and complete the handshake within ``timeouts.connect`` (wall clock).

    ``limit_at``: the caller's own deadline (``call(timeout_millis)``), which
    wins when sooner: running into it is a ``WaitTimeoutError``. Refused
    handshakes raise the mapped error at once.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    deadline = time.monotonic() + timeouts.connect
    caller_limit = limit_at is not None and limit_at < deadline
    if limit_at is not None:
        deadline = min(deadline, limit_at)
    ws = websocket.WebSocket(enable_multithread=True)
    # websocket-client has no hook for refusing frames: its reader is replaced by the
    # checking subclass, fed by the same (private) read function.
    ws.frame_buffer = _CheckedFrames(ws._recv, False)
    options: dict[str, Any] = {"header": [f"{name}: {value}" for name, value in headers.items()]}
    guard: DeadlineSocket | None = None
    try:
        if is_loopback(host) or not _proxied(host, secure):
            guard = DeadlineSocket(_open_socket(host, port, secure, deadline), timeouts.connect)
            guard.deadline = deadline
            options["socket"] = guard
        else:
            # Through a proxy websocket-client connects itself; the deadline holds from the handshake on.
            options["timeout"] = max(0.001, deadline - time.monotonic())
        ws.connect(url, **options)
        if guard is None:
            if ws.sock is None:
                raise websocket.WebSocketConnectionClosedException("the connection closed at once")
            guard = DeadlineSocket(ws.sock, timeouts.connect)
            ws.sock = guard  # type: ignore[assignment]  # a socket in all but name
        guard.deadline = None
        return ws
    except websocket.WebSocketBadStatusException as exc:
        ws.shutdown()
        body = exc.resp_body or b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        raise error_from_handshake(exc.status_code, redact(text)) from None
    except (websocket.WebSocketTimeoutException, TimeoutError):
        ws.shutdown()
        if guard is not None:
            guard.close()
        if caller_limit:
            raise WaitTimeoutError(
                "the task did not complete within its timeout_millis (still connecting)", code="WaitTimeout"
            ) from None
        raise ClientTimeoutError(
            f"could not connect to {host} within {timeouts.connect:g} s", code="ConnectTimeout"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        ws.shutdown()
        # Permanent: the same certificate fails the same way on every attempt.
        raise ConnectionLostError(
            redact(f"could not connect to {host}: TLS certificate verification failed: {exc.verify_message}"),
            code="TLSVerificationFailed",
            retryable=False,
            permanent=True,
        ) from None
    except (OSError, websocket.WebSocketException) as exc:
        ws.shutdown()
        if guard is not None:
            guard.close()
        raise ConnectionLostError(
            redact(f"could not connect to {host}: {type(exc).__name__}: {exc}"), code="ConnectFailed"
        ) from None


class TaskRun:
    """A started connection running one task; see the module docstring.

    Caller side: ``start``, ``send_text``, ``flush``, ``finish``,
    ``cancel_directive`` (the SDK's cancel), ``cancel`` (abort), ``mute``, and
    the events ``started`` (task-started, or the task ended), ``opened``
    (``on_open`` delivered), ``done`` (the outcome is known) and ``closed``
    (every callback delivered). ``error`` is the outcome when it failed.

    ``keep_open``: a task that finishes cleanly leaves its connection open
    (``reusable`` is then True) for the next task of a pooled synthesizer.
    """

    def __init__(
        self,
        ws: websocket.WebSocket,
        session: TaskSession,
        *,
        callback: Any,
        timeouts: Timeouts,
        liveness: Liveness,
        redact: Redactor,
        requested_at: float,
        deadline: float | None = None,
        keep_open: bool = False,
    ) -> None:
        self.ws = ws
        self.session = session
        self.callback = callback
        self.timeouts = timeouts
        self.liveness = liveness
        self.redact = redact
        self.requested_at = requested_at  # when the caller asked for the task (before connecting)
        self.deadline = deadline  # monotonic time by which the whole task must be over
        self.keep_open = keep_open
        self.reusable = False
        self.lock = threading.Lock()  # the session, and the order of what is sent
        self.audio = bytearray()  # without a callback the audio is collected here
        self.error: CosyVoiceError | None = None
        self.finished = False
        self.cancelled = False  # aborted: the connection was cut
        self.cancelling = False  # the cancel directive was sent: audio is dropped from then on
        self.muted = False  # the caller was told the task is over: only on_close may still come
        self.cancel_reason: CosyVoiceError | None = None
        self.last_message: str | None = None
        self.first_audio_at: float | None = None
        self.failure: TaskFailed | None = None
        self.started = threading.Event()
        self.opened = threading.Event()
        self.done = threading.Event()
        self.closed = threading.Event()
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.task_started = False  # task-started seen: on_open was (or is being) delivered
        self._run_sent_at = 0.0
        self._finish_at: float | None = None
        self._last_sent = 0.0
        self._last_event = 0.0  # the last progress of this task (its own events and audio)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self.reader: threading.Thread | None = None
        self.dispatcher: threading.Thread | None = None

    @property
    def task_id(self) -> str:
        return self.session.task_id

    # -- caller side --------------------------------------------------------
    def start(self) -> None:
        """Send run-task (unless the session's task was started ahead of time) and start the threads."""
        name = self.task_id[:8]
        if self.callback is not None:
            self.dispatcher = threading.Thread(
                target=self._dispatch_loop, name=f"cosyvoice-sync-callbacks-{name}", daemon=False
            )
            self.dispatcher.start()
        else:
            self.opened.set()
        self.reader = threading.Thread(
            target=self._read_loop, name=f"cosyvoice-sync-reader-{name}", daemon=False
        )
        try:
            with self.lock:
                # A task started ahead of time (the object pool's) already sent its run-task;
                # its task-started is read like any other (it may be waiting in the socket).
                if self.session.protocol.state is TaskState.IDLE:
                    self.session.start()
                self._run_sent_at = time.monotonic()
                self._send_pending()
        except CosyVoiceError as error:
            self.error = error
        try:
            self.reader.start()  # with an error already set, it only cleans up
        except RuntimeError:  # no thread could be started: end everything here
            self._end(self.error or CosyVoiceError("could not start the reader thread", task_id=self.task_id))
            raise

    def send_text(self, text: str) -> None:
        with self.lock:
            self._check_running()
            self.session.send_text(text, time.monotonic())
            self._send_pending()

    def flush(self) -> None:
        """The SDK's flush: the server speaks the text it holds; the task goes on."""
        with self.lock:
            self._check_running()
            self.session.protocol.flush()
            self._send_pending()
        self._wake()  # sending re-arms the reader's deadline

    def finish(self) -> None:
        with self.lock:
            self._check_running()
            if not self.session.protocol.finish_requested:
                self.session.finish()
                self._finish_at = time.monotonic()
                self._send_pending()
        self._wake()  # the reader's deadline changes (waiting for text -> waiting for audio)

    def cancel_directive(self) -> None:
        """The SDK's cancel: send finish-task with the cancel directive; drop audio from now on.

        The reader goes on until the server ends the task (task-finished), then
        ``on_complete`` and ``on_close`` follow. Audio or events still queued
        for the callback are dropped, so none arrives once the caller returns.
        """
        self.cancelling = True
        with self.lock:
            if self.done.is_set() or not self.session.protocol.active:
                return
            try:
                self.session.protocol.cancel()
                self._finish_at = time.monotonic()
                self._send_pending()
            except CosyVoiceError:
                pass  # the connection is gone: the reader ends the task
        self._wake()

    def mute(self) -> None:
        """The caller was told the task is over (a timeout raised): only ``on_close`` may still come."""
        self.muted = True

    def cancel(self, reason: CosyVoiceError | None = None) -> None:
        """Stop at once: close the connection; only ``on_close`` is still delivered.

        ``reason`` becomes the run's ``error`` (default: ``TaskCancelledError``).
        """
        self.mute()
        self.abort(reason)

    def abort(self, reason: CosyVoiceError | None = None) -> None:
        """Cut the connection now (the reader ends at once); callbacks already due still come."""
        if self.cancelled or self.done.is_set():
            return
        self.cancel_reason = reason or TaskCancelledError("the task was cancelled", task_id=self.task_id)
        self.cancelled = True
        with contextlib.suppress(Exception):
            self.ws.send_close(websocket.STATUS_NORMAL, b"cancelled")
        sock = self.ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in the middle of a frame
        self._wake()

    def _check_running(self) -> None:
        error = self.cancel_reason or self.error or self.session.error
        if error is not None:
            raise error
        if not self.session.protocol.active:
            raise ProtocolError("the task has ended", task_id=self.task_id)

    def _send_pending(self) -> None:
        """Send what the protocol has queued (hold ``lock``)."""
        for message in self.session.data_to_send():
            logger.debug("send %s", self.redact(message[:500]))
            try:
                self.ws.send(message)
            except (OSError, websocket.WebSocketException) as exc:
                error = ConnectionLostError(
                    f"could not send to the service ({type(exc).__name__}): the connection is gone",
                    code="ConnectionLost",
                    task_id=self.task_id,
                )
                if self.error is None:
                    self.error = error
                self._wake()
                raise error from None
            self._last_sent = time.monotonic()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    # -- reader -------------------------------------------------------------
    def _read_loop(self) -> None:
        error: CosyVoiceError | None = self.error
        try:
            if error is None:
                error = self._read()
        except Exception as exc:  # a bug here must not leave the caller waiting
            logger.exception("cosyvoice_stream.sync reader failed")
            error = CosyVoiceError(
                f"internal error in the synthesizer's reader: {type(exc).__name__}", task_id=self.task_id
            )
        finally:
            self._end(error)

    def _deadline(self, last_event: float) -> tuple[float, str]:
        """When the server's silence becomes an error, and what we are waiting for.

        ``last_event``: the last progress of this task (its own events and
        audio); chatter (unknown events, other tasks' events) does not count.
        """
        timeouts = self.timeouts
        protocol = self.session.protocol
        if protocol.state is TaskState.STARTING:
            at, what = self._run_sent_at + timeouts.start, "the task to start"
        elif not protocol.finish_requested:
            at = max(last_event, self._last_sent) + timeouts.text
            what = "server events while more text may come"
        elif self.first_audio_at is None and not self.cancelling:
            at = max(last_event, self._finish_at or 0.0) + timeouts.first_audio
            what = "the first audio"
        else:
            at, what = max(last_event, self._finish_at or 0.0) + timeouts.idle, "the rest of the audio"
        if self.deadline is not None and self.deadline < at:
            return self.deadline, _TASK_DEADLINE
        return at, what

    def _frame_deadline(self) -> float:
        # Without the lock: a caller holding it may be blocked in a send. A value read
        # while the state changes is at most one slice (DeadlineSocket.SLICE) stale.
        return self._deadline(self._last_event)[0]

    def _timed_out(self, waiting_for: str) -> CosyVoiceError:
        if waiting_for is _TASK_DEADLINE:
            return WaitTimeoutError(
                "the task did not complete within its timeout_millis",
                code="WaitTimeout",
                task_id=self.task_id,
            )
        return ClientTimeoutError(
            f"no reply from the service while waiting for {waiting_for}",
            code="ClientTimeout",
            task_id=self.task_id,
        )

    def _read(self) -> CosyVoiceError | None:
        ws = self.ws
        guard = ws.sock
        if not isinstance(guard, DeadlineSocket):
            return self._lost("the connection closed before the task started")
        sock = guard.raw
        ws.settimeout(self.timeouts.idle)  # bounds sends; reads are bounded by the deadline too
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ, "ws")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        interval, grace = self.liveness.interval, self.liveness.timeout
        last_rx = self._last_event = time.monotonic()
        ping_sent_at: float | None = None
        waiting_for = ""
        try:
            while True:
                if self.cancelled:
                    return None
                if self.error is not None:  # a send failed on the caller's side
                    return self.error
                now = time.monotonic()
                with self.lock:
                    deadline, waiting_for = self._deadline(self._last_event)
                if now >= deadline:
                    return self._timed_out(waiting_for)
                wake_at = deadline
                if interval is not None:
                    if ping_sent_at is not None:
                        if now >= ping_sent_at + grace:
                            return self._lost(
                                f"no reply to a ping within {grace:g} s: the connection is dead",
                                code="PingTimeout",
                            )
                        wake_at = min(wake_at, ping_sent_at + grace)
                    elif now >= last_rx + interval:
                        ws.ping()
                        ping_sent_at = now
                        continue
                    else:
                        wake_at = min(wake_at, last_rx + interval)
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    ready = {key.data for key, _ in selector.select(max(0.0, wake_at - now))}
                    if "wake" in ready:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    if "ws" not in ready:
                        continue
                # The rest of the frame must come before the deadline, however slowly it
                # trickles, and the deadline follows the task (finish() moves it).
                guard.deadline = self._frame_deadline
                try:
                    opcode, frame = ws.recv_data_frame(True)
                finally:
                    guard.deadline = None
                now = time.monotonic()
                last_rx, ping_sent_at = now, None
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    data = frame.data
                    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
                    if self._on_frame(text, now, text=True):
                        self._last_event = now
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    if self._on_frame(frame.data, now, text=False):
                        self._last_event = now
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    return None if self.finished else self._lost(_describe_close(frame.data))
                if self.finished:
                    return None
                if self.session.error is not None:
                    return self.session.error
        except websocket.WebSocketTimeoutException:
            if self.cancelled:
                return None
            if guard.expired:
                return self._timed_out(self._deadline(self._last_event)[1])
            return ClientTimeoutError(
                f"the service stopped in the middle of a message for {self.timeouts.idle:g} s",
                code="ClientTimeout",
                task_id=self.task_id,
            )
        except (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException) as exc:
            if self.cancelled or self.finished:
                return None
            return ProtocolError(
                self.redact(f"the server broke the WebSocket protocol: {exc}"[:500]),
                task_id=self.task_id,
                retryable=False,
            )
        except (OSError, websocket.WebSocketException) as exc:
            if self.cancelled or self.finished:
                return None
            return self._lost(f"the connection dropped ({type(exc).__name__})")
        finally:
            selector.close()

    def _lost(self, what: str, code: str = "ConnectionLost") -> CosyVoiceError:
        return ConnectionLostError(f"{what} before the task ended", code=code, task_id=self.task_id)

    def _on_frame(self, data: str | bytes, now: float, *, text: bool) -> bool:
        """Feed one frame to the session; True when it was progress of this task."""
        if text:
            logger.debug("recv %s", self.redact(str(data)[:500]))
        with self.lock:
            received = self.session.receive_frame(data, now, text=text)
            if text:
                self.last_message = str(data)
            if self.session.error is None and self.error is None:
                with contextlib.suppress(CosyVoiceError):  # kept in self.error, seen by the loop
                    self._send_pending()  # text held until task-started
        for event in received.protocol_events:
            if isinstance(event, TaskStarted):
                self._emit_open()
                self.started.set()
            elif isinstance(event, ResultGenerated):
                if not self.cancelling:
                    self._emit("on_event", event.raw)
            elif isinstance(event, TaskFailed):
                self.failure = event
        if not text and received.progress and self.first_audio_at is None:
            self.first_audio_at = now
        self._deliver(received.stream_events)
        return received.progress

    def _deliver(self, events: list[StreamEvent]) -> None:
        for event in events:
            if isinstance(event, AudioChunk):
                if self.cancelling:
                    continue  # cancelled: this audio is stale
                if self.callback is None:
                    self.audio += event.audio
                else:
                    self._emit("on_data", event.audio)
            elif isinstance(event, SynthesisComplete):
                self.finished = True

    def _emit(self, name: str, *args: Any) -> None:
        if self.callback is not None:
            self._queue.put((name, args))

    def _emit_open(self) -> None:
        self.task_started = True
        if self.callback is None:
            self.opened.set()
        else:
            self._emit("on_open")

    def _end(self, error: CosyVoiceError | None) -> None:
        """The reader's last act: record the outcome, close, queue the final callbacks.

        ``on_complete``/``on_error`` are queued before the connection is
        closed, ``on_close`` after it (the SDK's meaning: the connection is gone).
        A task ended by the cancel directive completes (``on_complete``) unless
        the server failed it; an abort after the caller's timeout only closes.
        """
        server_failed = error is not None and error is self.session.error
        if self.cancelling and not server_failed:
            error = None  # the caller's cancel ended it, whatever the server did after
        elif self.cancelled:
            error = None if self.finished else self.cancel_reason
        elif not self.finished and error is None:
            error = self._lost("the connection ended")
        if error is not None:
            with self.lock:
                if self.session.protocol.state is not TaskState.FAILED:
                    self.session.finalise()
            failure = self.failure
            if failure is not None and failure.error is error:
                error = as_request_failure(
                    error,
                    name=self.redact(failure.error_code) if failure.error_code is not None else None,
                    message=self.redact(failure.error_message) if failure.error_message is not None else None,
                )
            else:
                error = as_request_failure(error)  # cancels and timeouts stay as they are
            self.error = error
        if self.task_started and not (self.cancelled and not self.cancelling):
            if self.finished or (self.cancelling and error is None):
                self._emit("on_complete")
            elif error is not None:
                self._emit("on_error", self._error_message(error, server_failed))
        # A clean end (or the server's own task-failed) closes with a close frame;
        # a dead or stalled connection is just dropped. A pooled synthesizer keeps
        # a cleanly finished connection for its next task.
        if self.keep_open and self.finished and not self.cancelled and self.ws.connected:
            self.reusable = True
        else:
            self._close_ws(polite=self.finished or server_failed)
        if self.task_started:
            self._emit("on_close")
        if self.callback is None:
            self.opened.set()
            self.closed.set()
        else:
            self._queue.put(None)
        self.started.set()
        self.done.set()
        for end in (self._wake_r, self._wake_w):
            end.close()

    def _error_message(self, error: CosyVoiceError, server_failed: bool) -> ErrorMessage:
        failure = self.failure
        if server_failed and failure is not None and failure.raw is not None:
            return ErrorMessage(self.redact(failure.raw), error)
        return ErrorMessage.from_error(error, self.task_id)

    def _close_ws(self, *, polite: bool) -> None:
        ws = self.ws
        try:
            if polite and not self.cancelled and ws.connected:
                ws.close(timeout=self.timeouts.close)
        except Exception:  # closing is best effort
            logger.debug("closing the connection failed", exc_info=True)
        finally:
            with contextlib.suppress(Exception):
                ws.shutdown()

    # -- dispatcher ---------------------------------------------------------
    def _dispatch_loop(self) -> None:
        try:
            while True:
                item = self._queue.get()  # the reader always ends with None
                if item is None:
                    return
                name, args = item
                if name != "on_close":
                    if self.muted:
                        continue  # the caller was told the task is over
                    if self.cancelling and name in ("on_data", "on_event"):
                        continue  # stale: the caller cancelled
                method = getattr(self.callback, name, None)
                if method is not None:
                    try:
                        method(*args)
                    except Exception:
                        logger.exception("ResultCallback.%s raised; the task goes on", name)
                if name == "on_open":
                    self.opened.set()
        finally:
            self.opened.set()
            self.closed.set()


def _describe_close(data: bytes) -> str:
    if len(data) >= 2:
        code = int.from_bytes(data[:2], "big")
        reason = data[2:].decode("utf-8", "replace")[:200]
        return f"the server closed the connection (code {code}{', ' + reason if reason else ''})"
    return "the server closed the connection"
