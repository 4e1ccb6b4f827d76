"""Fixtures of the embedded server tests: short timeouts, a fresh server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from cosyvoice_stream.server import EmbeddedServer, ServerConfig

FAST = {"text_timeout_s": 3.0, "idle_timeout_s": 5.0}


@pytest.fixture
async def server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(ServerConfig(engine="tone", **FAST)) as srv:
        yield srv


@pytest.fixture
async def espeak_server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(ServerConfig(engine="espeak", **FAST)) as srv:
        yield srv
