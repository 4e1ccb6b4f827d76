"""Fixtures of the LiveKit plugin tests: the embedded server on loopback, no LiveKit server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from livekit.plugins import cosyvoice

from cosyvoice_stream.server import EmbeddedServer

#: The root conftest's ``start_server`` fixture.
StartServer = Callable[..., Awaitable[EmbeddedServer]]


@pytest.fixture(autouse=True)
async def _tasks_all_end(no_leaked_tasks: None) -> None:
    """Autouse: the root conftest's leak check applies to every test here."""


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
