"""The client connection reads into one shared buffer: what arrives is handed on intact."""

from __future__ import annotations

import asyncio
import os

from websockets.asyncio.server import ServerConnection, serve

from cosyvoice_stream.aio.connection import _READ_BUFFER_BYTES, Connection, Timeouts
from cosyvoice_stream.endpoint import Credentials

# Larger than the read buffer: the message spans several reads of the transport.
BIG = os.urandom(_READ_BUFFER_BYTES * 2 + 12345)


async def _talker(ws: ServerConnection) -> None:
    """Answers each text with the big binary message, a small one and a text, all at once."""
    async for message in ws:
        tag = str(message).encode()
        await ws.send(BIG)
        await ws.send(tag * 1000)
        await ws.send(f"done {message}")


async def test_connection_is_a_buffered_protocol_and_messages_arrive_intact() -> None:
    async with serve(_talker, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        url = f"ws://127.0.0.1:{port}"
        conns = [await Connection.open(url, Credentials(), Timeouts()) for _ in range(3)]
        try:
            # The transport reads with recv_into(), not a 256 KiB recv() per read.
            assert all(isinstance(c.ws, asyncio.BufferedProtocol) for c in conns)

            async def exchange(conn: Connection, tag: str) -> list[object]:
                await conn.ws.send(tag)
                return [await conn.ws.recv() for _ in range(3)]

            # The three connections' reads interleave through the one buffer.
            for round_ in range(3):
                tags = [f"{round_}{i}" for i in range(len(conns))]
                results = await asyncio.gather(*(exchange(c, t) for c, t in zip(conns, tags, strict=True)))
                for tag, (big, small, text) in zip(tags, results, strict=True):
                    assert big == BIG
                    assert small == tag.encode() * 1000
                    assert text == f"done {tag}"
        finally:
            for c in conns:
                await c.close()
