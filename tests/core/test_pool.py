"""The pool against the embedded server: reuse, idle replacement, primed-task expiry."""

from __future__ import annotations

import asyncio

from cosyvoice_stream import AsyncSynthesizer
from cosyvoice_stream.server import EmbeddedServer, ServerConfig


async def test_idle_connection_replaced_before_the_server_closes_it() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", idle_timeout_s=0.6)) as server:
        synth = AsyncSynthesizer(url=server.url, prestart=False, keep_warm=1)
        synth.pool.idle_ttl = 0.3
        try:
            await asyncio.wait_for(synth.prewarm(), 5)
            first = synth.pool.idle[0]
            # the maintainer swaps the connection out before the server's idle close
            await synth.pool.wait_until(lambda pool: bool(pool.idle) and first not in pool.idle, 5)
            assert not first.usable
            result = await asyncio.wait_for(synth.synthesize_audio("Still warm."), 5)
            assert result.audio and result.metrics[0].connection_reused
        finally:
            await synth.aclose()


async def test_unused_primed_task_is_dropped_before_the_server_text_timeout() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", text_timeout_s=1.0)) as server:
        synth = AsyncSynthesizer(url=server.url, keep_warm=0)
        synth.pool.primed_ttl = 0.3
        try:
            await asyncio.wait_for(synth.prewarm(), 5)
            assert synth.pool.idle[0].primed is not None
            await synth.pool.wait_until(lambda pool: not pool.idle, 5)
            result = await asyncio.wait_for(synth.synthesize_audio("Fresh task."), 5)
            assert result.audio
            assert not any(t.error_code for t in server.tasks)  # no task hit the server's timeout
        finally:
            await synth.aclose()


async def test_token_provider_called_per_new_connection() -> None:
    calls: list[int] = []

    async def provider() -> str:
        calls.append(1)
        return "st-temporary"

    async with EmbeddedServer(ServerConfig(engine="tone", api_keys=frozenset({"st-temporary"}))) as server:
        async with AsyncSynthesizer(url=server.url, token_provider=provider, keep_warm=0) as synth:
            await asyncio.wait_for(synth.synthesize_audio("One."), 5)
            await asyncio.wait_for(synth.synthesize_audio("Two."), 5)
    assert len(calls) == 1  # the second utterance reused the connection


async def test_acquire_waits_for_the_spare_already_opening() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        async with AsyncSynthesizer(url=server.url, keep_warm=0) as synth:
            warming = asyncio.ensure_future(synth.prewarm())
            result = await asyncio.wait_for(synth.synthesize_audio("Right after start."), 5)
            await asyncio.wait_for(warming, 5)
        assert result.metrics[0].connection_reused
        assert server.connections_opened == 1


async def test_update_options_replaces_connections_primed_with_old_settings() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        async with AsyncSynthesizer(url=server.url, keep_warm=1) as synth:
            await asyncio.wait_for(synth.synthesize_audio("First."), 5)
            synth.update_options(voice="longanhuan")
            await synth.pool.wait_until(
                lambda pool: any(c.primed and c.primed.options.voice == "longanhuan" for c in pool.idle), 5
            )
            result = await asyncio.wait_for(synth.synthesize_audio("Second."), 5)
        assert result.metrics[0].connection_reused  # the re-primed spare, no handshake on the path
        spoken = [t for t in server.tasks if t.texts]
        assert [t.parameters["voice"] for t in spoken] == ["longanyang", "longanhuan"]
