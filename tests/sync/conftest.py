"""Fixtures of the synchronous API tests: an embedded server per test, and a thread-leak check."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cosyvoice_stream.server import EmbeddedServer, ServerConfig, ServerHandle

from .support import KEY, client_threads, join_new_threads


def _start(**config: object) -> ServerHandle:
    return EmbeddedServer(
        ServerConfig(engine="tone", api_keys=frozenset({KEY}), **config)  # type: ignore[arg-type]
    ).start_in_thread()


@pytest.fixture
def server() -> Iterator[ServerHandle]:
    """An embedded server (tone engine, key ``KEY``).

    At teardown every thread the client started must have ended: the number of
    live threads (the server's own aside) is back to what it was.
    """
    handle = _start()
    before = set(client_threads())
    try:
        yield handle
        leaked = join_new_threads(before, timeout=5.0)
        assert not leaked, f"threads left running: {leaked}"
        assert len(client_threads()) <= len(before)  # threading.active_count() back to baseline
    finally:
        handle.stop()


@pytest.fixture
def make_server() -> Iterator[object]:
    """Start servers with other settings; the same thread-leak check as ``server``."""
    handles: list[ServerHandle] = []
    before = set(client_threads())

    def make(**config: object) -> ServerHandle:
        handle = _start(**config)
        handles.append(handle)
        return handle

    try:
        yield make
        leaked = join_new_threads(before, timeout=5.0)
        assert not leaked, f"threads left running: {leaked}"
    finally:
        for handle in handles:
            handle.stop()
