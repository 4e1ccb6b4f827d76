"""Fixtures of the Pipecat adapter tests: the embedded tone server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from cosyvoice_stream.server import EmbeddedServer, ServerConfig

StartServer = Callable[..., Awaitable[EmbeddedServer]]


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every task a test started (service readers, prewarm, core, server) has ended at teardown."""
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and t not in before and not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=2.0)
        assert not still, f"leaked tasks: {[t.get_name() for t in still]}"


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start an embedded tone server with ``ServerConfig`` overrides; stopped at teardown."""
    servers: list[EmbeddedServer] = []

    async def start(**overrides: Any) -> EmbeddedServer:
        server = EmbeddedServer(ServerConfig(engine="tone", **overrides))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def server(start_server: StartServer) -> EmbeddedServer:
    """The tone engine, as fast as it goes: 200 ms words, 50 ms gaps, |sample| == task tag."""
    return await start_server()
