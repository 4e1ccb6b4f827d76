"""Fixtures of the Pipecat adapter tests: the embedded tone server on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from cosyvoice_stream.server import EmbeddedServer

#: The root conftest's ``start_server`` fixture.
StartServer = Callable[..., Awaitable[EmbeddedServer]]


@pytest.fixture(autouse=True)
async def _tasks_all_end(no_leaked_tasks: None) -> None:
    """Autouse: the root conftest's leak check applies to every test here."""


@pytest.fixture
async def server(start_server: StartServer) -> EmbeddedServer:
    """The tone engine, as fast as it goes: 200 ms words, 50 ms gaps, |sample| == task tag."""
    return await start_server()
