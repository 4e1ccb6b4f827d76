"""The service side of the benchmark: embedded servers in a process of their own.

    python -m benchmarks.backend '{"ttfa": {"first_packet_delay_ms": 150, "rtf": 0.3}, ...}'

Starts one ``EmbeddedServer`` (tone engine) per named configuration on one
event loop, prints one JSON line ``{"servers": {name: {"url", "port"}}}``
and serves until stdin closes or SIGTERM. Running the server in its own
process keeps its CPU out of the client's process time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
from typing import Any


async def _main(configs: dict[str, dict[str, Any]]) -> None:
    from cosyvoice_stream.server import EmbeddedServer, ServerConfig

    servers = {}
    for name, overrides in configs.items():
        server = EmbeddedServer(ServerConfig(engine="tone", **overrides))
        await server.start()
        servers[name] = server
    print(
        json.dumps({"servers": {name: {"url": s.url, "port": s.port} for name, s in servers.items()}}),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Stop as well when the parent goes away (its end of our stdin closes).
    if os.environ.get("BENCH_WATCH_STDIN", "1") == "1":

        def watch() -> None:
            sys.stdin.buffer.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, daemon=True).start()
    await stop.wait()
    for server in servers.values():
        await server.stop()


def main() -> None:
    configs = json.loads(sys.argv[1])
    cpu = os.environ.get("BENCH_CPU")
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu)})
    import logging

    logging.basicConfig(level=logging.WARNING)
    asyncio.run(_main(configs))


if __name__ == "__main__":
    main()
