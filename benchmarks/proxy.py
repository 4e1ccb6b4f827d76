"""A TCP latency proxy: what a real network adds between a client and the service.

Every byte is held for one one-way delay (RTT/2) in each direction, and the
first byte a client sends on a new connection is held as if TCP and TLS had
to be set up first (``handshake_rtts`` round trips: 1 for TCP plus 1 for
TLS 1.3, or 2 for TLS 1.2). The WebSocket upgrade then costs its own round
trip through the delays, as on a real network, so opening a connection costs
``handshake_rtts + 1`` round trips in all.

Threads, not asyncio: ``time.sleep`` wakes within ~0.1 ms of its deadline,
where an event loop's timers may fire up to 1 ms late (epoll has millisecond
granularity), and the benchmark wants to resolve 1 ms. Every socket has
TCP_NODELAY. Run it in its own process (``python -m benchmarks.proxy``) so
the client being measured pays nothing for it.

    python -m benchmarks.proxy --upstream 127.0.0.1:8000 --rtt-ms 50 --rtt-ms 150
    # prints one JSON line: {"proxies": [{"rtt_ms": 50, "port": ...}, ...]}
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import sys
import threading
import time

_EOF = object()


def _nodelay(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


class _Pipe:
    """One direction of one connection: read, hold until due, write."""

    def __init__(
        self, src: socket.socket, dst: socket.socket, delay: float, hold_until: float, on_close
    ) -> None:
        self.src, self.dst = src, dst
        self.delay = delay
        self.hold_until = hold_until
        self.on_close = on_close
        self.items: collections.deque = collections.deque()
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.writer = threading.Thread(target=self._write, daemon=True)

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.src.recv(262144)
                due = max(time.monotonic() + self.delay, self.hold_until + self.delay)
                with self.cond:
                    self.items.append((due, data if data else _EOF))
                    self.cond.notify()
                if not data:
                    return
        except OSError:
            with self.cond:
                self.items.append((time.monotonic(), None))  # reset: close at once
                self.cond.notify()

    def _write(self) -> None:
        try:
            while True:
                with self.cond:
                    while not self.items:
                        self.cond.wait()
                    due, data = self.items.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                if data is None:
                    break
                if data is _EOF:
                    try:
                        self.dst.shutdown(socket.SHUT_WR)
                    except OSError:
                        pass
                    self.on_close(False)
                    return
                # Coalesce whatever else is already due (fewer syscalls, same timing).
                chunks = [data]
                with self.cond:
                    now = time.monotonic()
                    while self.items and self.items[0][0] <= now and isinstance(self.items[0][1], bytes):
                        chunks.append(self.items.popleft()[1])
                self.dst.sendall(b"".join(chunks) if len(chunks) > 1 else data)
        except OSError:
            pass
        self.on_close(True)


class _Connection:
    def __init__(
        self, client: socket.socket, upstream: tuple[str, int], rtt: float, handshake_rtts: float
    ) -> None:
        self.client = client
        self.server = socket.create_connection(upstream)
        _nodelay(client)
        _nodelay(self.server)
        accepted = time.monotonic()
        self._closed = False
        self._half_closed = 0
        self._lock = threading.Lock()
        one_way = rtt / 2.0
        self.up = _Pipe(client, self.server, one_way, accepted + handshake_rtts * rtt, self.close)
        self.down = _Pipe(self.server, client, one_way, 0.0, self.close)

    def start(self) -> None:
        self.up.start()
        self.down.start()

    def close(self, abort: bool = True) -> None:
        with self._lock:
            if self._closed:
                return
            self._half_closed += 1
            if not abort and self._half_closed < 2:
                return  # one direction ended cleanly: wait for the other
            self._closed = True
        for sock in (self.client, self.server):
            try:
                sock.close()
            except OSError:
                pass


class LatencyProxy:
    """Listen on ``host:port`` and forward to ``upstream`` with ``rtt_ms`` of round-trip delay."""

    def __init__(
        self,
        upstream: tuple[str, int],
        rtt_ms: float,
        *,
        handshake_rtts: float = 2.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.rtt_ms = rtt_ms
        self.handshake_rtts = handshake_rtts
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4096)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def url(self, path: str = "/api-ws/v1/inference") -> str:
        return f"ws://{self.host}:{self.port}{path}"

    def start(self) -> LatencyProxy:
        self._thread.start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                conn = _Connection(client, self.upstream, self.rtt_ms / 1000.0, self.handshake_rtts)
            except OSError:
                client.close()
                continue
            self.connections += 1
            conn.start()

    def stop(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--upstream", required=True, help="host:port of the server")
    parser.add_argument(
        "--rtt-ms", type=float, action="append", required=True, help="round-trip time; repeatable"
    )
    parser.add_argument(
        "--handshake-rtts", type=float, default=2.0, help="TCP+TLS set-up round trips (default 2)"
    )
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    host, _, port = args.upstream.rpartition(":")
    proxies = [
        LatencyProxy((host, int(port)), rtt, handshake_rtts=args.handshake_rtts).start()
        for rtt in args.rtt_ms
    ]
    print(
        json.dumps({"proxies": [{"rtt_ms": p.rtt_ms, "port": p.port, "url": p.url()} for p in proxies]}),
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
