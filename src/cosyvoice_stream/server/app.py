"""The embedded DashScope-compatible WebSocket server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from .config import SERVICE_PATH, ServerConfig, TaskRecord
from .engines import Engine, create_engine
from .enrollment import EnrollmentServer, VoiceStore
from .faults import Fault
from .session import Connection, ServerContext

logger = logging.getLogger("cosyvoice_stream.server")

_HANDSHAKE_BODIES: dict[int, tuple[str, str]] = {
    401: ("InvalidApiKey", "Invalid API-key provided."),
    403: ("AccessDenied", "Access denied."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: ("InternalError", "An internal error has occured, please try again later."),
}
_START_TIMEOUT_S = 30.0
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key"})


class _RedactSecrets(logging.Filter):
    """Hides credentials in websockets' debug log of handshake headers."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 2
            and isinstance(args[0], str)
            and args[0].lower() in _SECRET_HEADERS
        ):
            record.args = (args[0], "<redacted>")
        return True


#: The logger given to websockets: its header dumps never show a key.
protocol_logger = logging.getLogger("cosyvoice_stream.server.websockets")
protocol_logger.addFilter(_RedactSecrets())


def _handshake_body(status: int) -> str:
    code, message = _HANDSHAKE_BODIES.get(status, ("Error", HTTPStatus(status).phrase))
    return json.dumps({"code": code, "message": message, "request_id": ""})


class EmbeddedServer:
    """A local stand-in for the CosyVoice service, with real offline speech.

    ``EmbeddedServer(config)`` or ``EmbeddedServer(engine="tone", ...)``
    (keyword arguments override fields of ``config``). Use it as an async
    context manager, or ``start_in_thread()`` from synchronous code.
    """

    def __init__(self, config: ServerConfig | None = None, **overrides: Any) -> None:
        base = config or ServerConfig()
        self.config = dataclasses.replace(base, **overrides) if overrides else base
        self._engine: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._context: ServerContext | None = None
        self._server: Server | None = None
        self._pending_faults: list[Fault] = []
        #: Voices cloned through the customization API; kept across stop/start.
        self.voices = VoiceStore()
        self._enrollment: EnrollmentServer | None = None

    # -- lifecycle --------------------------------------------------------
    async def start(self) -> None:
        """Create the engine and bind the socket (``config.port=0``: a free port)."""
        if self._server is not None:
            raise RuntimeError("the server is already running")
        config = self.config
        engine = create_engine(
            config.engine, tone_word_ms=config.tone_word_ms, tone_gap_ms=config.tone_gap_ms
        )
        executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"cosyvoice-{engine.name}")
            if engine.blocking
            else None
        )
        context = ServerContext(config, engine, executor)
        context.voices = self.voices
        for fault in self._pending_faults:
            context.faults.add(fault)
        self._pending_faults.clear()
        try:
            server = await serve(
                self._handler,
                config.host,
                config.port,
                process_request=self._process_request,
                max_size=config.max_message_bytes,
                compression=None,
                ping_interval=None,
                close_timeout=2.0,
                backlog=2048,
                server_header="cosyvoice-stream-embedded",
                logger=protocol_logger,
            )
        except BaseException:
            if executor is not None:
                executor.shutdown(wait=False)
            raise
        if config.enrollment:
            enrollment = EnrollmentServer(self.voices, config.host, config.enrollment_port, config.api_keys)
            try:
                enrollment.start()
            except BaseException:
                server.close()
                await server.wait_closed()
                if executor is not None:
                    executor.shutdown(wait=False)
                raise
            self._enrollment = enrollment
        self._engine, self._executor, self._context, self._server = engine, executor, context, server
        logger.info("embedded CosyVoice server (%s engine) listening on %s", engine.name, self.url)

    async def stop(self) -> None:
        """Close every connection (code 1001) and the socket; idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        await server.wait_closed()
        enrollment, self._enrollment = self._enrollment, None
        if enrollment is not None:
            enrollment.stop()  # wakes its thread at once; nothing here waits on a poll interval
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._engine is not None:
            self._engine.close()

    async def __aenter__(self) -> EmbeddedServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def serve_forever(self) -> None:
        """Start (if needed) and serve until cancelled."""
        if self._server is None:
            await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.stop()

    def start_in_thread(self) -> ServerHandle:
        """Run the server on its own event loop in a daemon thread (for synchronous code)."""
        handle = ServerHandle(self)
        handle._start()
        return handle

    # -- introspection ----------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def host(self) -> str:
        host = self.config.host
        return f"[{host}]" if ":" in host else host

    @property
    def url(self) -> str:
        """``ws://host:port/api-ws/v1/inference`` (any path is accepted)."""
        return f"ws://{self.host}:{self.port}{SERVICE_PATH}"

    @property
    def enrollment_url(self) -> str:
        """The voice cloning API root, ``http://host:port/api/v1`` (the SDK's ``base_http_api_url``)."""
        if self._enrollment is None:
            raise RuntimeError(
                "the voice cloning API is not running (ServerConfig.enrollment=False, or stopped)"
            )
        return self._enrollment.url

    @property
    def tasks(self) -> list[TaskRecord]:
        """The tasks this server saw, in order of run-task: the last ``max_task_records``."""
        return self._context.tasks if self._context is not None else []

    @property
    def connections_opened(self) -> int:
        """WebSocket handshakes accepted so far."""
        return self._context.connections_opened if self._context is not None else 0

    @property
    def active_connections(self) -> int:
        return self._context.active_connections if self._context is not None else 0

    @property
    def pending_faults(self) -> list[Fault]:
        if self._context is None:
            return list(self._pending_faults)
        return self._context.faults.pending

    async def wait_until(self, predicate: Callable[[EmbeddedServer], bool], timeout: float) -> None:
        """Wait (at most ``timeout`` s) until ``predicate(server)`` holds.

        Checked after every client message handled and every frame sent, so
        tests synchronise on what the server saw instead of sleeping.
        """
        context = self._context
        if context is None:
            raise RuntimeError("the server is not running")

        async def check() -> None:
            while not predicate(self):
                context.changed.clear()
                await context.changed.wait()

        await asyncio.wait_for(check(), timeout)

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault for the next matching task(s) or handshake; thread-safe."""
        if not isinstance(fault, Fault):
            raise TypeError(f"expected a Fault, got {type(fault).__name__}")
        if self._context is None:
            self._pending_faults.append(fault)
        else:
            self._context.faults.add(fault)

    def clear_faults(self) -> None:
        self._pending_faults.clear()
        if self._context is not None:
            self._context.faults.clear()

    # -- websockets callbacks ---------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        context = self._context
        assert context is not None
        fault = context.faults.take_handshake()
        if fault is not None:
            return connection.respond(fault.status, _handshake_body(fault.status))
        if self.config.api_keys:
            authorization = request.headers.get("Authorization")
            if authorization is None:
                return connection.respond(HTTPStatus.UNAUTHORIZED, _handshake_body(401))
            scheme, _, key = authorization.partition(" ")
            if scheme.lower() != "bearer" or key.strip() not in self.config.api_keys:
                return connection.respond(HTTPStatus.FORBIDDEN, _handshake_body(403))
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        context = self._context
        assert context is not None
        context.connections_opened += 1
        context.active_connections += 1
        try:
            await Connection(context, ws).run()
        finally:
            context.active_connections -= 1


class ServerHandle:
    """An ``EmbeddedServer`` running in its own thread; ``stop()`` ends it."""

    def __init__(self, server: EmbeddedServer) -> None:
        self.server = server
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="cosyvoice-embedded-server", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def _start(self) -> None:
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise TimeoutError(f"the embedded server did not start within {_START_TIMEOUT_S:g} s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:  # pragma: no cover - unexpected crash after start
                logger.exception("embedded server thread crashed")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        await self.server.start()
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self.server.stop()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and join its thread (idempotent)."""
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # pragma: no cover - loop already closed
                pass
        self._thread.join(timeout)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
