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
import json
import logging
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

from ..aio.connection import Timeouts
from ..endpoint import is_loopback
from ..errors import (
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    ProtocolError,
    TaskCancelledError,
)
from ..events import AudioChunk, StreamEvent, SynthesisComplete
from ..protocol import TaskState, error_from_handshake
from ..redact import RedactingFilter
from ..session import TaskSession
from .callback import ErrorMessage
from .errors import WaitTimeoutError

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


def open_websocket(
    url: str, headers: dict[str, str], timeouts: Timeouts, redact: Redactor
) -> websocket.WebSocket:
    """Connect and complete the handshake; refused handshakes raise the mapped error at once."""
    host = urlsplit(url).hostname or ""
    options: dict[str, Any] = {}
    if is_loopback(host):
        options["http_no_proxy"] = [host]  # never send a local server's traffic through a proxy
    try:
        return websocket.create_connection(
            url,
            timeout=timeouts.connect,
            header=[f"{name}: {value}" for name, value in headers.items()],
            enable_multithread=True,
            **options,
        )
    except websocket.WebSocketBadStatusException as exc:
        body = exc.resp_body or b""
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        raise error_from_handshake(exc.status_code, redact(text)) from None
    except (websocket.WebSocketTimeoutException, TimeoutError):
        raise ClientTimeoutError(
            f"could not connect to {host} within {timeouts.connect:g} s", code="ConnectTimeout"
        ) from None
    except (OSError, websocket.WebSocketException) as exc:
        raise ConnectionLostError(
            redact(f"could not connect to {host}: {type(exc).__name__}: {exc}"), code="ConnectFailed"
        ) from None


class TaskRun:
    """A started connection running one task; see the module docstring.

    Caller side: ``start``, ``send_text``, ``finish``, ``cancel`` and the
    events ``started`` (task-started, or the task ended), ``opened``
    (``on_open`` delivered), ``done`` (the outcome is known) and ``closed``
    (every callback delivered). ``error`` is the outcome when it failed.
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
    ) -> None:
        self.ws = ws
        self.session = session
        self.callback = callback
        self.timeouts = timeouts
        self.liveness = liveness
        self.redact = redact
        self.requested_at = requested_at  # when the caller asked for the task (before connecting)
        self.deadline = deadline  # monotonic time by which the whole task must be over
        self.lock = threading.Lock()  # the session, and the order of what is sent
        self.audio = bytearray()  # without a callback the audio is collected here
        self.error: CosyVoiceError | None = None
        self.finished = False
        self.cancelled = False
        self.cancel_reason: CosyVoiceError | None = None
        self.last_message: str | None = None
        self.first_audio_at: float | None = None
        self.started = threading.Event()
        self.opened = threading.Event()
        self.done = threading.Event()
        self.closed = threading.Event()
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self.task_started = False  # task-started seen: on_open was (or is being) delivered
        self._run_sent_at = 0.0
        self._finish_at: float | None = None
        self._last_sent = 0.0
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
        """Send run-task and start the threads."""
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

    def finish(self) -> None:
        with self.lock:
            self._check_running()
            if not self.session.protocol.finish_requested:
                self.session.finish()
                self._finish_at = time.monotonic()
                self._send_pending()
        self._wake()  # the reader's deadline changes (waiting for text -> waiting for audio)

    def cancel(self, reason: CosyVoiceError | None = None) -> None:
        """Stop at once: close the connection; only ``on_close`` is still delivered.

        ``reason`` becomes the run's ``error`` (default: ``TaskCancelledError``).
        """
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
        """When the server's silence becomes an error, and what we are waiting for."""
        timeouts = self.timeouts
        protocol = self.session.protocol
        if protocol.state is TaskState.STARTING:
            at, what = self._run_sent_at + timeouts.start, "task-started"
        elif not protocol.finish_requested:
            at = max(last_event, self._last_sent) + timeouts.text
            what = "server events while more text may come"
        elif self.first_audio_at is None:
            at = max(last_event, self._finish_at or 0.0) + timeouts.first_audio
            what = "the first audio"
        else:
            at, what = last_event + timeouts.idle, "the rest of the audio"
        if self.deadline is not None and self.deadline < at:
            return self.deadline, _TASK_DEADLINE
        return at, what

    def _read(self) -> CosyVoiceError | None:
        ws = self.ws
        sock = ws.sock
        if sock is None:
            return self._lost("the connection closed before the task started")
        ws.settimeout(self.timeouts.idle)  # bounds sends and the rest of a frame already begun
        selector = selectors.DefaultSelector()
        selector.register(sock, selectors.EVENT_READ, "ws")
        selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        interval, grace = self.liveness.interval, self.liveness.timeout
        last_rx = last_event = time.monotonic()
        ping_sent_at: float | None = None
        try:
            while True:
                if self.cancelled:
                    return None
                if self.error is not None:  # a send failed on the caller's side
                    return self.error
                now = time.monotonic()
                with self.lock:
                    deadline, waiting_for = self._deadline(last_event)
                if now >= deadline:
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
                opcode, frame = ws.recv_data_frame(True)
                now = time.monotonic()
                last_rx, ping_sent_at = now, None
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    last_event = now
                    data = frame.data
                    self._on_text(data.decode("utf-8", "replace") if isinstance(data, bytes) else data, now)
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    last_event = now
                    self._on_audio(frame.data, now)
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    return None if self.finished else self._lost(_describe_close(frame.data))
                if self.finished:
                    return None
                if self.session.error is not None:
                    return self.session.error
        except websocket.WebSocketTimeoutException:
            if self.cancelled:
                return None
            return ClientTimeoutError(
                f"the service stopped in the middle of a message for {self.timeouts.idle:g} s",
                code="ClientTimeout",
                task_id=self.task_id,
            )
        except (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException) as exc:
            if self.cancelled or self.finished:
                return None
            return ProtocolError(
                self.redact(f"the server broke the WebSocket protocol: {exc}"), task_id=self.task_id
            )
        except (OSError, websocket.WebSocketException) as exc:
            if self.cancelled or self.finished:
                return None
            return self._lost(f"the connection dropped ({type(exc).__name__})")
        finally:
            selector.close()

    def _lost(self, what: str, code: str = "ConnectionLost") -> CosyVoiceError:
        return ConnectionLostError(f"{what} before the task ended", code=code, task_id=self.task_id)

    def _on_text(self, text: str, now: float) -> None:
        logger.debug("recv %s", self.redact(text[:500]))
        with self.lock:
            events = self.session.receive_text(text, now)
            self.last_message = text
            if self.session.error is None and self.error is None:
                with contextlib.suppress(CosyVoiceError):  # kept in self.error, seen by the loop
                    self._send_pending()  # text held until task-started
        try:
            header = json.loads(text).get("header") or {}
            event = header.get("event")
        except (ValueError, AttributeError):
            event = None
        if event == "task-started" and self.session.protocol.state in (
            TaskState.STARTED,
            TaskState.FINISHING,
        ):
            self._emit_open()
            self.started.set()
        elif event == "result-generated":
            self._emit("on_event", text)
        self._deliver(events)

    def _on_audio(self, data: bytes, now: float) -> None:
        if self.first_audio_at is None:
            self.first_audio_at = now
        with self.lock:
            events = self.session.receive_bytes(data, now)
        self._deliver(events)

    def _deliver(self, events: list[StreamEvent]) -> None:
        for event in events:
            if isinstance(event, AudioChunk):
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
        """
        if self.cancelled:
            error = None if self.finished else self.cancel_reason
        elif not self.finished and error is None:
            error = self._lost("the connection ended")
        if error is not None:
            self.error = error
            with self.lock:
                if self.session.protocol.state is not TaskState.FAILED:
                    self.session.finalise()
        if self.task_started and not self.cancelled:
            if self.finished:
                self._emit("on_complete")
            elif error is not None:
                self._emit("on_error", self._error_message(error))
        # A clean end (or the server's own task-failed) closes with a close frame;
        # a dead or stalled connection is just dropped.
        self._close_ws(polite=self.finished or (error is not None and error is self.session.error))
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

    def _error_message(self, error: CosyVoiceError) -> ErrorMessage:
        raw = self.last_message
        if raw is not None and error is self.session.error:
            with contextlib.suppress(ValueError, AttributeError):
                if (json.loads(raw).get("header") or {}).get("event") == "task-failed":
                    return ErrorMessage(raw, error)
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
                if self.cancelled and name != "on_close":
                    continue
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
        reason = data[2:].decode("utf-8", "replace")
        return f"the server closed the connection (code {code}{', ' + reason if reason else ''})"
    return "the server closed the connection"
