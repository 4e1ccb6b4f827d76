"""Shared fixtures: the embedded server on loopback, nothing else on the network."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from cosyvoice_stream.server import EmbeddedServer, ServerConfig

# Tests never reach the cloud, whatever the developer's shell has set.
for _name in (
    "DASHSCOPE_API_KEY",
    "DASHSCOPE_WEBSOCKET_BASE_URL",
    "DASHSCOPE_API_REGION",
    "DASHSCOPE_WORKSPACE_ID",
):
    os.environ.pop(_name, None)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "soak: long reliability runs (make soak), not part of make test")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("-m") and "soak" in config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="soak test: run with make soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every task a test started (adapter, core, framework, server) has ended at teardown.

    The adapter suites make it autouse, so it is set up first and torn down
    last; tasks still finishing get a bounded wait.
    """
    before = set(asyncio.all_tasks())
    yield
    current = asyncio.current_task()
    pending = [t for t in asyncio.all_tasks() if t is not current and t not in before and not t.done()]
    if pending:
        _, still = await asyncio.wait(pending, timeout=2.0)
        assert not still, f"leaked tasks: {[t.get_name() for t in still]}"


@pytest.fixture
def alive_without_collector() -> Iterator[Callable[[type], int]]:
    """The cyclic garbage collector is off for the test, so whatever a reference cycle
    holds stays alive; gives the number of live objects of a type."""
    gc.collect()
    gc.disable()
    try:
        yield lambda kind: sum(1 for obj in gc.get_objects() if type(obj) is kind)
    finally:
        gc.enable()


StartServer = Callable[..., Awaitable[EmbeddedServer]]


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
