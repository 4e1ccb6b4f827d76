"""Helpers of the synchronous API tests."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import Any

from cosyvoice_stream.sync import ResultCallback

KEY = "sk-test-0123456789abcdef"
MODEL = "cosyvoice-v3-flash"
VOICE = "longanyang"
STEP = 5.0  # bound of every single wait, seconds

_SERVER_THREADS = ("cosyvoice-embedded-server", "cosyvoice-tone", "cosyvoice-espeak")


def client_threads() -> list[threading.Thread]:
    """Live threads other than the main thread, the embedded servers' and the test proxies'."""
    main = threading.main_thread()
    return [
        t
        for t in threading.enumerate()
        if t is not main and not t.name.startswith(_SERVER_THREADS) and not t.name.startswith("proxy-")
    ]


def join_new_threads(before: set[threading.Thread], timeout: float) -> list[str]:
    """Join the threads started since ``before`` (within ``timeout`` s in all); those still alive."""
    deadline = time.monotonic() + timeout
    new = [t for t in client_threads() if t not in before and t is not threading.current_thread()]
    for thread in new:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in new if t.is_alive()]


def until(predicate: Any, what: str, timeout: float = STEP) -> None:
    """A bounded poll of a condition that another thread (or the server) changes."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(0.01)


class RecordingCallback(ResultCallback):
    """Records every callback, in order, with the thread it ran on."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.threads: set[str] = set()
        self.closed = threading.Event()
        self.first_data = threading.Event()
        self._lock = threading.Lock()

    def _record(self, name: str, value: Any = None) -> None:
        with self._lock:
            self.calls.append((name, value))
            self.threads.add(threading.current_thread().name)

    @property
    def names(self) -> list[str]:
        """Callback names in order, consecutive repeats collapsed."""
        out: list[str] = []
        for name, _ in self.calls:
            if not out or out[-1] != name:
                out.append(name)
        return out

    @property
    def audio(self) -> bytes:
        return b"".join(value for name, value in self.calls if name == "on_data")

    def values(self, name: str) -> list[Any]:
        return [value for n, value in self.calls if n == name]

    def on_open(self) -> None:
        self._record("on_open")

    def on_event(self, message: str) -> None:
        self._record("on_event", message)

    def on_data(self, data: bytes) -> None:
        self._record("on_data", data)
        self.first_data.set()

    def on_complete(self) -> None:
        self._record("on_complete")

    def on_error(self, message: str) -> None:
        self._record("on_error", message)

    def on_close(self) -> None:
        self._record("on_close")
        self.closed.set()


class FreezableProxy:
    """A TCP proxy on loopback that can stop forwarding without closing anything.

    ``freeze()`` simulates a silent disconnect (a dead NAT entry, a cable
    pulled): both ends keep their sockets, nothing more gets through.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.frozen = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._accept_loop, name="proxy-accept", daemon=True)
        self._accept.start()

    def url(self, path: str = "/api-ws/v1/inference") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def freeze(self) -> None:
        self.frozen.set()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=STEP)
            self._sockets += [client, upstream]
            pump = threading.Thread(
                target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True
            )
            self._threads.append(pump)
            pump.start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        while not self._stop.is_set():
            if self.frozen.is_set():
                self._stop.wait(0.05)  # hold the connections open, forward nothing
                continue
            readable, _, _ = select.select([a, b], [], [], 0.05)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data or self.frozen.is_set():
                    if not data:
                        return
                    continue
                with contextlib.suppress(OSError):
                    peers[sock].sendall(data)

    def close(self) -> None:
        self._stop.set()
        for thread in [self._accept, *self._threads]:
            thread.join(STEP)
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()
