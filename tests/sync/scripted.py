"""A scripted WebSocket server on raw sockets: it misbehaves exactly as a test tells it to.

Each connection runs ``handler(peer)`` on its own thread. ``RawPeer`` speaks
just enough RFC 6455 to play a CosyVoice server, and can also send what a
real server never should: masked frames, oversized lengths, bytes trickled
one at a time. Threads are named ``proxy-...`` so the sync suite's
thread-leak check leaves them to ``ScriptedServer.stop()``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from typing import Any

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def event(task_id: str, name: str, payload: dict[str, Any] | None = None) -> str:
    header = {"task_id": task_id, "event": name, "attributes": {}}
    return json.dumps({"header": header, "payload": payload or {}})


def frame(
    opcode: int, payload: bytes, *, masked: bool = False, rsv: int = 0, length: int | None = None
) -> bytes:
    """One frame; ``length`` overrides the announced length (to lie about it)."""
    size = len(payload) if length is None else length
    head = bytes([0x80 | (rsv << 4) | opcode])
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes([mask_bit | size])
    elif size < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", size)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", size)
    if masked:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


class RawPeer:
    """One client connection, seen from the server."""

    def __init__(self, sock: socket.socket, stop: threading.Event) -> None:
        self.sock = sock
        self.stop = stop
        self._buffer = b""

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the client closed")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def handshake(self, *, trickle: float | None = None, padding: int = 0) -> None:
        """Answer the upgrade; with ``trickle``, one byte every ``trickle`` s (``padding`` extra header bytes)."""
        while b"\r\n\r\n" not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the client closed")
            self._buffer += chunk
        request, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        key = next(
            line.split(b":", 1)[1].strip()
            for line in request.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + GUID.encode()).digest()).decode()
        response = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            + (f"X-Padding: {'a' * padding}\r\n" if padding else "")
            + f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
        ).encode()
        if trickle is None:
            self.sock.sendall(response)
        else:
            self.trickle(response, trickle)

    def trickle(self, data: bytes, interval: float) -> None:
        """Send ``data`` one byte at a time, ``interval`` s apart (the fault itself, not a synchronisation)."""
        for i in range(len(data)):
            if self.stop.wait(interval):
                return
            self.sock.sendall(data[i : i + 1])

    def message(self) -> tuple[int, bytes]:
        """The next data frame of the client (unmasked); pings are answered."""
        while True:
            b1, b2 = self._read(2)
            size = b2 & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read(8))[0]
            key = self._read(4) if b2 & 0x80 else b"\0\0\0\0"
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(self._read(size)))
            opcode = b1 & 0xF
            if opcode == PING:
                self.sock.sendall(frame(PONG, payload))
                continue
            return opcode, payload

    def json(self) -> dict[str, Any]:
        opcode, payload = self.message()
        if opcode != TEXT:
            raise ConnectionError(f"expected a text frame, got opcode {opcode}")
        value: dict[str, Any] = json.loads(payload)
        return value

    def start_task(self) -> str:
        """Read run-task, answer task-started; the task id."""
        task_id: str = self.json()["header"]["task_id"]
        self.send(event(task_id, "task-started"))
        return task_id

    def send(self, data: str | bytes) -> None:
        self.sock.sendall(frame(TEXT, data.encode()) if isinstance(data, str) else frame(BINARY, data))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def hold(self) -> None:
        """Keep the connection open, sending nothing, until the server stops."""
        self.stop.wait()


class ScriptedServer:
    """Accepts connections on loopback and runs ``handler(peer)`` for each; ``stop()`` ends everything."""

    def __init__(self, handler: Callable[[RawPeer], None], *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.stop_event = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self._accept = threading.Thread(target=self._accept_loop, name="proxy-scripted-accept", daemon=True)
        self._accept.start()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'wss' if self.tls else 'ws'}://{host}:{self.port}/api-ws/v1/inference"

    def _accept_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                sock, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            self._sockets.append(sock)
            thread = threading.Thread(
                target=self._serve, args=(sock,), name="proxy-scripted-peer", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(5.0)
                try:
                    sock = self.tls.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError):
                    return  # the client refused the certificate
                self._sockets.append(sock)
                sock.settimeout(None)
            self.handler(RawPeer(sock, self.stop_event))
        except (ConnectionError, OSError):
            pass  # the client went away: the scenario is over
        except BaseException as exc:  # a broken script must fail the test, not vanish
            self.errors.append(exc)

    def stop(self) -> None:
        self.stop_event.set()
        for sock in [self.listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in [self._accept, *self._threads]:
            thread.join(5.0)
        assert not self.errors, self.errors

    def __enter__(self) -> ScriptedServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
