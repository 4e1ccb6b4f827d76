"""The service side of the benchmark: embedded servers in a process of their own.

    python -m benchmarks.backend '{"ttfa": {"first_packet_delay_ms": 150, "rtf": 0.3}, ...}'

Starts one ``EmbeddedServer`` (tone engine) per named configuration on one
event loop, prints one JSON line ``{"servers": {name: {"url", "port"}}}``
and serves until stdin closes or SIGTERM. Running the server in its own
process keeps its CPU out of the client's process time.

A probe ticks on the servers' event loop every 5 ms and records each stall
(a tick at least ``STALL_S`` late: the process was busy or not scheduled).
Each line ``stalls`` on stdin is answered with one JSON line
``{"stalls": [[end, seconds], ...]}`` (``end`` on ``time.perf_counter``,
which is CLOCK_MONOTONIC and so shared with the client processes) listing
the stalls since the last such line: the concurrency benchmark uses it to
tell a frame made late by the server from one the client made late.

With ``BENCH_GC=between-levels`` the process does not run Python's cyclic
garbage collector by itself: each line ``collect`` runs a full collection
(answered with ``{"collected": n, "seconds": s}``) and forgets the stalls
so far. The concurrency benchmark sends it between levels, while no stream
runs: at hundreds of open connections a full pass stalls this process for
tens of milliseconds, a pause of the stand-in that the cloud service it
stands in for does not have. The client processes collect as usual.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import sys
import threading
import time
from typing import Any

STALL_S = 0.010
TICK_S = 0.005


class StallProbe:
    """Stalls of the event loop it runs on, as (end, seconds) on ``time.perf_counter``."""

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    async def run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(TICK_S)
            end = time.perf_counter()
            late = end - start - TICK_S
            if late >= STALL_S:
                with self._lock:
                    self.stalls.append((end, late))

    def take(self) -> list[tuple[float, float]]:
        with self._lock:
            taken, self.stalls = self.stalls, []
        return taken


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
    probe = StallProbe()
    probing = asyncio.ensure_future(probe.run())
    if os.environ.get("BENCH_GC") == "between-levels":
        gc.collect()
        gc.freeze()  # what start-up made stays out of every later pass
        gc.disable()
    # Stop as well when the parent goes away (its end of our stdin closes).
    if os.environ.get("BENCH_WATCH_STDIN", "1") == "1":

        def watch() -> None:
            for line in sys.stdin:
                command = line.strip()
                if command == "stalls":
                    print(json.dumps({"stalls": probe.take()}), flush=True)
                elif command == "collect":
                    started = time.perf_counter()
                    collected = gc.collect()
                    seconds = time.perf_counter() - started
                    probe.take()
                    print(json.dumps({"collected": collected, "seconds": seconds}), flush=True)
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=watch, daemon=True).start()
    await stop.wait()
    probing.cancel()
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
