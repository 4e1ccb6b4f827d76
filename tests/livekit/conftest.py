"""Fixtures of the LiveKit plugin tests: the embedded server on loopback, no LiveKit server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from livekit.plugins import cosyvoice

from cosyvoice_stream.server import EmbeddedServer, ServerConfig


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every task a test started (plugin, core, LiveKit, server) has ended at teardown.

    Autouse, so it is set up first and torn down last: after the TTS and the
    server fixtures closed everything. Tasks still finishing get a bounded wait.
    """
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and t not in before and not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=2.0)
        assert not still, f"leaked tasks: {[t.get_name() for t in still]}"


StartServer = Callable[..., Awaitable[EmbeddedServer]]


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start an embedded tone server with config overrides; stopped at teardown."""
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
    return await start_server()


MakeTTS = Callable[..., cosyvoice.TTS]


@pytest.fixture
async def make_tts(server: EmbeddedServer) -> AsyncIterator[MakeTTS]:
    """Build ``cosyvoice.TTS`` instances (default: against ``server``); closed at teardown."""
    created: list[cosyvoice.TTS] = []

    def make(**kwargs: Any) -> cosyvoice.TTS:
        kwargs.setdefault("base_url", server.url)
        tts = cosyvoice.TTS(**kwargs)
        created.append(tts)
        return tts

    yield make
    for tts in created:
        await tts.aclose()
