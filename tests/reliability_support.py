"""Helpers of the reliability suite: a fault-injecting TCP proxy, leak checks, audio checks.

Nothing here sleeps to synchronise: waits are on events, or bounded polls of a
condition (``until``), each under an explicit deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import threading
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

import numpy as np

from cosyvoice_stream import AudioChunk, CosyVoiceError, SynthesisComplete

# -- waiting ----------------------------------------------------------------------


async def until(predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` holds, checking every few ms; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.005)


# -- resources ----------------------------------------------------------------------


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class Resources:
    """What a scenario must give back: asyncio tasks, threads, file descriptors."""

    tasks: set[asyncio.Task[object]]
    threads: set[int]
    fds: int

    @classmethod
    def snapshot(cls) -> Resources:
        return cls(set(asyncio.all_tasks()), {t.ident or 0 for t in threading.enumerate()}, fd_count())

    def leaks(self) -> str:
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t not in self.tasks and t is not current and not t.done()]
        threads = [t for t in threading.enumerate() if (t.ident or 0) not in self.threads and t.is_alive()]
        fds = fd_count() - self.fds
        problems = []
        if tasks:
            problems.append(f"{len(tasks)} asyncio task(s): {[t.get_coro() for t in tasks][:5]}")
        if threads:
            problems.append(f"{len(threads)} thread(s): {[t.name for t in threads]}")
        if fds > 0:
            problems.append(f"{fds} file descriptor(s)")
        return "; ".join(problems)

    async def assert_released(self, timeout: float = 5.0) -> None:
        """Everything opened since the snapshot is gone (closing is asynchronous: wait for it)."""
        deadline = time.monotonic() + timeout
        gc.collect()  # objects only reachable from cycles release their sockets now
        while True:
            leaks = self.leaks()
            if not leaks:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"leaked after {timeout:g} s: {leaks}")
            await asyncio.sleep(0.01)


# -- audio ------------------------------------------------------------------------


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2").astype(np.int32)


def tags_of(pcm: bytes) -> set[int]:
    """The tone engine's per-task amplitudes found in ``pcm``."""
    s = np.abs(samples(pcm))
    return {int(v) for v in np.unique(s[s > 0])}


def shape(pcm: bytes) -> bytes:
    """The tone audio with its task tag taken out (-1, 0, +1 per sample): equal for equal text."""
    return np.sign(samples(pcm)).astype(np.int8).tobytes()


@dataclass
class Outcome:
    """What one utterance delivered: its audio, completions, and the error that ended it."""

    audio: bytes = b""
    chunks: int = 0
    completes: int = 0
    task_ids: list[str] = field(default_factory=list)
    error: BaseException | None = None
    elapsed: float = 0.0
    timed_out: bool = False  # the outcome was not known within the limit: a hang


async def drive(events: AsyncIterable[object], limit: float) -> Outcome:
    """Consume a stream of events (bounded by ``limit`` s); record what came and how it ended."""
    out = Outcome()
    parts: list[bytes] = []
    started = time.monotonic()

    async def run() -> None:
        async for event in events:
            if isinstance(event, AudioChunk):
                parts.append(event.audio)
                out.chunks += 1
                if event.task_id and event.task_id not in out.task_ids:
                    out.task_ids.append(event.task_id)
            elif isinstance(event, SynthesisComplete):
                out.completes += 1

    try:
        await asyncio.wait_for(run(), limit)
    except CosyVoiceError as error:
        out.error = error
    except asyncio.TimeoutError:
        out.timed_out = True
    finally:
        out.elapsed = time.monotonic() - started
        out.audio = b"".join(parts)
    return out


# -- the proxy ----------------------------------------------------------------------


class _Link:
    """One proxied TCP connection: client <-> proxy <-> upstream."""

    def __init__(self, proxy: TcpProxy, client: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.bytes_up = 0  # client -> server
        self.bytes_down = 0  # server -> client
        self.cut = False
        self.cut_event = asyncio.Event()
        self.stalled = False
        self.cut_after_down = proxy.cut_after_down
        self.stall_after_down = proxy.stall_after_down

    def abort(self) -> None:
        self.cut = True
        self.cut_event.set()
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()


class TcpProxy:
    """A small asyncio TCP proxy in front of the embedded server, for network faults.

    * ``stall()``/``resume()``: stop/restart moving bytes in both directions
      (the connections stay open: a silent peer). ``stall_after_down=N``: a new
      connection stalls once N bytes went to the client.
    * ``cut_all()``: abort every connection (RST, no close frame).
      ``cut_after_down=N``: a new connection is cut once N bytes went to the client.
    * ``refuse()``/``accept()``: close/reopen the listening socket (connection refused).
    """

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", *, ssl: object = None) -> None:
        self.ssl = ssl  # an ssl.SSLContext: terminate TLS here (a wss:// front for the server)
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.port = 0
        self.links: list[_Link] = []
        self.cut_after_down: int | None = None
        self.stall_after_down: int | None = None
        self._armed: dict[str, int] | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.changed = asyncio.Event()

    def url(self, path: str = "/api-ws/v1/inference") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def start(self) -> TcpProxy:
        self._server = await asyncio.start_server(
            self._accept,
            "127.0.0.1",
            self.port,
            ssl=self.ssl,  # type: ignore[arg-type]
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def refuse(self) -> None:
        """Stop listening: new connections are refused (open ones are left alone)."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def accept(self) -> None:
        if self._server is None:
            await self.start()

    def arm(self, *, cut_after_down: int | None = None, stall_after_down: int | None = None) -> None:
        """Cut or stall the NEXT accepted connection only, once N bytes went to the client."""
        armed = {}
        if cut_after_down is not None:
            armed["cut_after_down"] = cut_after_down
        if stall_after_down is not None:
            armed["stall_after_down"] = stall_after_down
        self._armed = armed

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut_all(self) -> None:
        for link in self.links:
            link.abort()

    @property
    def open_links(self) -> list[_Link]:
        return [link for link in self.links if not link.cut and not link.client.transport.is_closing()]

    async def aclose(self) -> None:
        await self.refuse()
        self.cut_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> TcpProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def _track(self, coro: object) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link(self, writer)
        if self._armed is not None:
            link.cut_after_down = self._armed.get("cut_after_down")
            link.stall_after_down = self._armed.get("stall_after_down")
            self._armed = None
        self.links.append(link)
        self.changed.set()
        try:
            up_reader, up_writer = await asyncio.open_connection(self.upstream_host, self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        link.upstream = up_writer
        if link.cut_after_down == 0:
            link.abort()
            up_writer.transport.abort()
            return
        up = self._track(self._pump(link, reader, up_writer, downstream=False))
        down = self._track(self._pump(link, up_reader, writer, downstream=True))
        await asyncio.wait([up], return_when=asyncio.FIRST_COMPLETED)
        if link.stalled:  # the client gave up on a silent peer: nothing more to hold
            link.abort()
        await asyncio.gather(up, down, return_exceptions=True)
        link.abort()
        self.changed.set()

    async def _pump(
        self, link: _Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, downstream: bool
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while not link.cut:
                await self._flowing.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self._flowing.wait()
                if link.cut:
                    return
                if downstream:
                    limit = link.cut_after_down
                    stall = link.stall_after_down
                    if limit is not None and link.bytes_down + len(data) >= limit:
                        writer.write(data[: max(0, limit - link.bytes_down)])
                        link.bytes_down = limit
                        await writer.drain()
                        link.abort()
                        self.changed.set()
                        return
                    if stall is not None and link.bytes_down + len(data) >= stall:
                        head = data[: max(0, stall - link.bytes_down)]
                        writer.write(head)
                        link.bytes_down += len(head)
                        link.stalled = True
                        self.changed.set()
                        await link.cut_event.wait()  # a silent peer: hold the rest until cut
                        return
                    link.bytes_down += len(data)
                else:
                    link.bytes_up += len(data)
                writer.write(data)
                await writer.drain()
                self.changed.set()
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()  # half-close: the other direction may still carry data
                else:  # TLS has no half-close
                    writer.close()


# -- a hostile server -----------------------------------------------------------------------


class ScriptedServer:
    """A WebSocket server that answers every run-task with scripted frames, then waits.

    ``TASK_ID`` in a text frame is replaced with the task id of the run-task.
    """

    def __init__(self, script: list[str | bytes]) -> None:
        self.script = script
        self.port = 0
        self._server: object = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api-ws/v1/inference"

    async def __aenter__(self) -> ScriptedServer:
        from websockets.asyncio.server import serve

        server = await serve(self._handler, "127.0.0.1", 0, max_size=None, compression=None)
        self._server = server
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        server = self._server
        server.close()  # type: ignore[attr-defined]
        await server.wait_closed()  # type: ignore[attr-defined]

    async def _handler(self, ws: object) -> None:
        from websockets.exceptions import ConnectionClosed

        with contextlib.suppress(ConnectionClosed):
            async for message in ws:  # type: ignore[attr-defined]
                try:
                    header = json.loads(message).get("header", {})
                except (ValueError, AttributeError):
                    continue
                if header.get("action") != "run-task":
                    continue
                task_id = str(header.get("task_id"))
                for frame in self.script:
                    data = frame.replace("TASK_ID", task_id) if isinstance(frame, str) else frame
                    await ws.send(data)  # type: ignore[attr-defined]


# -- TLS --------------------------------------------------------------------------------------


def self_signed_cert(directory: str, hostname: str = "localhost") -> tuple[str, str]:
    """A self-signed certificate for ``hostname`` (cert file, key file), made with
    ``cryptography`` when installed, else the ``openssl`` command."""
    import datetime
    import shutil
    import subprocess

    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            import pytest

            pytest.skip("neither cryptography nor openssl is available to make a certificate")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", key, "-out", cert, "-days", "1", "-subj", f"/CN={hostname}",
             "-addext", f"subjectAltName=DNS:{hostname}"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    with open(cert, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    with open(key, "wb") as f:
        f.write(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return cert, key


# -- a server at the byte level ------------------------------------------------------------

_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = False, rsv: int = 0) -> bytes:
    """One WebSocket frame as a server would write it (``mask=True``: illegal for a server)."""
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload)
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + length.to_bytes(2, "big")
    else:
        head += bytes([bit | 127]) + length.to_bytes(8, "big")
    if mask:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def ws_text(text: str) -> bytes:
    return ws_frame(0x1, text.encode())


def ws_close(code: int, reason: str = "") -> bytes:
    return ws_frame(0x8, code.to_bytes(2, "big") + reason.encode())


def event(task_id: str, name: str, payload: dict | None = None, **header: object) -> bytes:
    """A server event as a text frame."""
    message = {"header": {"task_id": task_id, "event": name, **header}, "payload": payload or {}}
    return ws_text(json.dumps(message))


class RawLink:
    """One connection of ``RawServer``: write raw bytes, read the client's run-task."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.authorization = ""

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def trickle(self, data: bytes, every: float = 0.2) -> None:
        """Write ``data`` one byte every ``every`` s (a peer that is slow, not silent)."""
        for i in range(len(data)):
            await self.send(data[i : i + 1])
            await asyncio.sleep(every)

    async def read_message(self) -> str | None:
        """The next text message from the client (None at EOF); control frames are skipped."""
        while True:
            try:
                first, second = await self.reader.readexactly(2)
                length = second & 0x7F
                if length == 126:
                    length = int.from_bytes(await self.reader.readexactly(2), "big")
                elif length == 127:
                    length = int.from_bytes(await self.reader.readexactly(8), "big")
                key = await self.reader.readexactly(4) if second & 0x80 else b"\0\0\0\0"
                data = await self.reader.readexactly(length)
            except (asyncio.IncompleteReadError, OSError):
                return None
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(data))
            if first & 0x0F == 0x1:
                return payload.decode("utf-8", "replace")


RawScript = Callable[[RawLink, str], "asyncio.Future[None] | object"]


class RawServer:
    """A WebSocket server written at the byte level, for what ``websockets`` will not send:
    close frames without the TCP close, masked or oversized frames, bytes that trickle.

    ``handshake``: ``"ok"``; ``"trickle"`` (the 101 answer one byte every 0.2 s);
    or an HTTP status (int) refused with ``body`` (``{key}`` becomes the client's key).
    ``script(link, task_id)`` runs for every run-task; the connection stays open
    (TCP included) until the client closes it or the server is closed.
    """

    def __init__(self, script: Callable[[RawLink, str], object] | None = None, *,
                 handshake: str | int = "ok", body: str = "") -> None:  # fmt: skip
        self.script = script
        self.handshake = handshake
        self.body = body
        self.port = 0
        self.connections = 0
        self.run_tasks = 0
        self._server: asyncio.base_events.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api-ws/v1/inference"

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._serve(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import base64
        import hashlib

        self._writers.append(writer)
        self.connections += 1
        link = RawLink(reader, writer)
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            request = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            headers = {}
            for line in request.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            link.authorization = headers.get("authorization", "")
            if isinstance(self.handshake, int):
                key = link.authorization.removeprefix("Bearer ").strip()
                body = self.body.replace("{key}", key).encode()
                await link.send(
                    f"HTTP/1.1 {self.handshake} Refused\r\nContent-Length: {len(body)}\r\n"
                    "Content-Type: application/json\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                writer.close()
                return
            accept = base64.b64encode(
                hashlib.sha1((headers["sec-websocket-key"] + _WS_GUID).encode()).digest()
            ).decode()
            answer = (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
            ).encode()
            if self.handshake == "trickle":
                await link.trickle(answer)
            else:
                await link.send(answer)
            while (message := await link.read_message()) is not None:
                try:
                    header = json.loads(message).get("header", {})
                except (ValueError, AttributeError):
                    continue
                if header.get("action") == "run-task" and self.script is not None:
                    self.run_tasks += 1
                    outcome = self.script(link, str(header.get("task_id")))
                    if asyncio.iscoroutine(outcome):
                        task = asyncio.ensure_future(outcome)
                        self._tasks.add(task)
                        task.add_done_callback(self._tasks.discard)
