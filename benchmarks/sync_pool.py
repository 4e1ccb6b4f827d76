"""``SpeechSynthesizerObjectPool`` through a latency proxy: what a borrowed synthesizer's first task costs.

    python -m benchmarks.sync_pool --rtt-ms 50 --rounds 20
    python -m benchmarks.sync_pool --rtt-ms 50 --no-prestart   # warm connections only

The embedded server (tone engine, 150 ms first-packet delay, audio as fast as it goes) and
the latency proxy run in processes of their own; this process only runs the
client. Each round borrows a synthesizer, runs one task and returns it, then
leaves the pool alone for ``--pause`` seconds (an application between two
utterances; it is the workload, not a synchronisation). Two workloads:

* ``call``: the blocking ``call(text)`` without a callback (wall time until
  the audio is returned) and its first audio (``get_first_package_delay()``);
* ``streaming``: ``streaming_call(text)`` with a callback, time to the first
  ``on_data``, then ``streaming_complete()``.

It prints one JSON line per workload (median, p90, min in ms) and the
server's handshake and run-task counts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from cosyvoice_stream.sync import AudioFormat, ResultCallback, SpeechSynthesizerObjectPool

KEY = "sk-bench-0123456789abcdef"
TEXT = "Hello there, this is the sentence a borrowed synthesizer says."
PCM = AudioFormat.PCM_16000HZ_MONO_16BIT
STEP = 10.0


def _spawn(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = dict(os.environ, BENCH_WATCH_STDIN="0")  # stopped by terminate()
    process = subprocess.Popen(
        [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"{args[1]} did not start")
    return process, json.loads(line)


class _FirstAudio(ResultCallback):
    def __init__(self) -> None:
        self.started = 0.0
        self.first: float | None = None
        self.got = threading.Event()

    def on_data(self, data: bytes) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.got.set()


def _summary(name: str, values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    return {
        "workload": name,
        "rounds": len(values),
        "median_ms": round(statistics.median(ordered), 1),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 1),
        "min_ms": round(ordered[0], 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rtt-ms", type=float, default=50.0)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between rounds")
    parser.add_argument(
        "--no-prestart", action="store_true", help="warm connections without prestarted tasks"
    )
    args = parser.parse_args(argv)
    config = {"b": {"api_keys": [KEY], "first_packet_delay_ms": 150, "rtf": 0.0}}
    backend, info = _spawn("-m", "benchmarks.backend", json.dumps(config))
    port = info["servers"]["b"]["port"]
    proxy, proxies = _spawn(
        "-m", "benchmarks.proxy", "--upstream", f"127.0.0.1:{port}", "--rtt-ms", str(args.rtt_ms)
    )
    try:
        url = proxies["proxies"][0]["url"]
        extra: dict[str, Any] = {"prestart": False} if args.no_prestart else {}
        pool = SpeechSynthesizerObjectPool(max_size=2, url=url, api_key=KEY, **extra)
        try:
            results = []
            for workload in ("call", "streaming"):
                wall: list[float] = []
                first: list[float] = []
                for round_ in range(args.rounds + 1):  # the first round primes: not counted
                    time.sleep(args.pause)
                    if workload == "call":
                        synthesizer = pool.borrow_synthesizer("cosyvoice-v3-flash", "longanyang", format=PCM)
                        started = time.perf_counter()
                        audio = synthesizer.call(TEXT, timeout_millis=int(STEP * 1000))
                        elapsed = (time.perf_counter() - started) * 1000
                        assert audio
                        if round_:
                            wall.append(elapsed)
                            first.append(synthesizer.get_first_package_delay())
                    else:
                        callback = _FirstAudio()
                        synthesizer = pool.borrow_synthesizer(
                            "cosyvoice-v3-flash", "longanyang", format=PCM, callback=callback
                        )
                        started = time.perf_counter()
                        synthesizer.streaming_call(TEXT)
                        if not callback.got.wait(STEP):
                            raise RuntimeError("no audio")
                        assert callback.first is not None
                        synthesizer.streaming_complete(int(STEP * 1000))
                        if round_:
                            first.append((callback.first - started) * 1000)
                    pool.return_synthesizer(synthesizer)
                if workload == "call":
                    results.append(_summary("call() until the audio is returned", wall))
                    results.append(_summary("call() first audio", first))
                else:
                    results.append(_summary("streaming_call() first audio (on_data)", first))
        finally:
            pool.shutdown()
        label = "warm connections only" if args.no_prestart else "default"
        for result in results:
            print(json.dumps({"rtt_ms": args.rtt_ms, "pool": label, **result}), flush=True)
    finally:
        for process in (proxy, backend):
            process.terminate()
            process.wait(STEP)


if __name__ == "__main__":
    main()
