"""Fixtures of the reliability suite: the embedded server (tone engine) on loopback."""

from __future__ import annotations

import pytest

from cosyvoice_stream.server import EmbeddedServer, ServerConfig


@pytest.fixture
async def server():
    async with EmbeddedServer(ServerConfig(engine="tone")) as srv:
        yield srv
