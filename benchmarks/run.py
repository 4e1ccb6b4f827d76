"""``make bench``: us, the physical floor and the alternatives, side by side in one run.

    python -m benchmarks.run            # everything (~10 min on 2 cores; the first run
                                        # also installs the peers' environments)
    BENCH_QUICK=1 python -m benchmarks.run   # a smoke run with few utterances
    python -m benchmarks.run --scenario llm [--n N]   # only "LLM token stream, first
                                        # token -> first audio" (benchmarks/llm.py)
    python -m benchmarks.run --scenario cpu          # only client CPU per audio second (core)
    python -m benchmarks.run --scenario concurrency [--levels 100,300,500]   # only N
                                        # real-time streams, long and short utterances (core)
    python -m benchmarks.run --scenario short        # only 200 concurrent short replies
                                        # on a warm pool: CPU per audio second, loop lag

What runs where (2 cores): the embedded server and the latency proxy on
CPU 1, every client (ours and the peers, each a driver subprocess in its own
environment) on CPU 0. Results go to ``.bench/results.json``,
``docs/benchmarks.md`` and ``docs/benchmarks-ttfa.png``; the last lines
printed are the headline ratios. Speed targets are printed, never asserted.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import envs, llm
from .report import headline_lines, late_frames, write_report

ROOT = envs.ROOT
PEERS = Path(__file__).resolve().parent / "peers"
RESULTS = envs.BENCH_DIR / "results.json"
CLIENT_CPU, SERVER_CPU = "0", "1"

QUICK = os.environ.get("BENCH_QUICK") == "1"


@dataclass
class Settings:
    rtts_ms: tuple[int, ...] = (0, 50, 150)
    first_packet_delay_ms: float = 150.0
    rtf: float = 0.3
    chunk_ms: int = 100
    tone_word_ms: int = 40
    tone_gap_ms: int = 10
    handshake_rtts: float = 2.0  # TCP + TLS 1.3 before the WebSocket upgrade
    token_period_s: float = 0.05
    n_warm: int = 5 if QUICK else 30
    n_cold: int = 5 if QUICK else 30
    n_interrupt: int = 3 if QUICK else 10
    interrupt_rtt_ms: int = 50
    interrupt_after_bytes: int = 24000  # 0.5 s of 24 kHz audio delivered before the interruption
    cpu_utterances: int = 5 if QUICK else 20
    cpu_rounds: int = 5
    cpu_tone_word_ms: int = 200
    cpu_tone_gap_ms: int = 50
    profile_utterances: int = 5 if QUICK else 20
    cpu_rates: tuple[int, ...] = (24000, 32000)
    concurrency_levels: tuple[int, ...] = (100, 200) if QUICK else (100, 200, 300, 400, 500, 600, 800, 1000)
    concurrency_stagger_s: float = 1.5
    conc_tone_word_ms: int = 100  # 13 s of audio per stream, 3.9 s to send at RTF 0.3: the streams overlap
    conc_tone_gap_ms: int = 25
    # Short utterances (voice-agent replies): 2.4 s of audio each, several turns per stream.
    short_streams: int = 200
    short_turns: int = 3 if QUICK else 5
    short_turn_gap_s: float = 0.5
    llm_token_rates: tuple[int, ...] = (20, 40, 80)
    n_llm: int = 5 if QUICK else 20

    def gap_s(self, rtt_ms: float) -> float:
        """Pause between utterances (a user turn): long enough for a primed task to start."""
        return 0.1 + 1.2 * rtt_ms / 1000.0


@dataclass
class Client:
    key: str
    label: str
    env: str  # "project" or an envs.ENVS name
    driver: str
    ours: bool = False
    framework: str = "none"
    scenarios: tuple[str, ...] = ("ttfa", "interrupt", "cpu")
    notes: list[str] = field(default_factory=list)

    @property
    def python(self) -> str:
        return sys.executable if self.env == "project" else str(envs.ENVS[self.env].python)


CLIENTS = [
    Client(
        "ours-core", "cosyvoice-stream core (AsyncSynthesizer)", "project", "ours_core.py", True, "asyncio"
    ),
    Client(
        "ours-pipecat",
        "cosyvoice-stream Pipecat (CosyVoiceTTSService)",
        "project",
        "ours_pipecat.py",
        True,
        "pipecat",
    ),
    Client(
        "ours-livekit",
        "cosyvoice-stream LiveKit (cosyvoice.TTS)",
        "project",
        "ours_livekit.py",
        True,
        "livekit",
    ),
    Client(
        "sdk", "dashscope SDK (tts_v2.SpeechSynthesizer)", "dashscope", "peer_dashscope_sdk.py", False, "none"
    ),
    Client(
        "pipecat-dashscope",
        "pipecat-dashscope 0.2.0 (DashScopeTTSV2Service)",
        "pipecat",
        "peer_pipecat_dashscope.py",
        False,
        "pipecat",
    ),
    Client(
        "livekit-aliyun",
        "livekit-plugins-aliyun 1.8.1.post0 (aliyun.TTS)",
        "livekit",
        "peer_livekit_aliyun.py",
        False,
        "livekit",
    ),
]


def echo(*args: Any) -> None:
    print(*args, flush=True)


# -- processes ----------------------------------------------------------------
class Background:
    """A long-running helper process that prints one JSON line when ready."""

    def __init__(self, argv: list[str], cpu: str, **env_vars: str) -> None:
        env = dict(os.environ, BENCH_CPU=cpu, **env_vars)
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"{argv[2:4]} did not start: {err[-2000:]}")
        self.info = json.loads(line)

    def ask(self, command: str) -> Any:
        """A ``benchmarks.backend``'s answer to ``command`` (one line each way)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def stalls(self) -> list[tuple[float, float]]:
        """The backend's event-loop stalls since the last call (or ``collect``): (end, seconds)."""
        return [tuple(x) for x in self.ask("stalls")["stalls"]]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def run_driver(client: Client, spec: dict, timeout: float = 600, profile_to: Path | None = None) -> dict:
    argv = [client.python, str(PEERS / client.driver), json.dumps(spec)]
    if profile_to is not None:
        pyspy = str(envs.ENVS["tools"].path / "bin" / "py-spy")
        argv = [pyspy, "record", "--rate", "1000", "--format", "raw", "-o", str(profile_to), "--", *argv]
    env = envs.driver_env(client.python)
    env["BENCH_CPU"] = CLIENT_CPU
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-6:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)[-1500:]}


def run_parallel(jobs: list[tuple[str, Client, dict]], timeout: float = 900) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def work(key: str, client: Client, spec: dict) -> None:
        out[key] = run_driver(client, spec, timeout)

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


# -- statistics -----------------------------------------------------------------
def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    f = int(k)
    c = min(f + 1, len(s) - 1)
    return s[f] + (s[c] - s[f]) * (k - f)


def summary(values: list[float] | None) -> dict | None:
    if not values:
        return None
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": pct(values, 0.95),
        "min": min(values),
    }


# -- the run ---------------------------------------------------------------------
def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def adapters_available() -> dict[str, str | None]:
    """Which of our adapters import in the project venv (None) or why not."""
    out: dict[str, str | None] = {}
    for key, stmt in (
        ("ours-pipecat", "import pipecat_cosyvoice; pipecat_cosyvoice.CosyVoiceTTSService"),
        ("ours-livekit", "from livekit.plugins import cosyvoice; cosyvoice.TTS"),
        ("server", "from cosyvoice_stream.server import EmbeddedServer, ServerConfig"),
    ):
        proc = subprocess.run([sys.executable, "-c", stmt], cwd=ROOT, capture_output=True, text=True)
        out[key] = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["?"])[-1]
    return out


def main() -> None:
    if "--report-only" in sys.argv:  # redraw from the last run's .bench/results.json
        report(json.loads(RESULTS.read_text()))
        return
    if "--scenario" in sys.argv:
        scenario = sys.argv[sys.argv.index("--scenario") + 1]
        if scenario in ("cpu", "concurrency", "short"):
            levels = (
                tuple(int(x) for x in sys.argv[sys.argv.index("--levels") + 1].split(","))
                if "--levels" in sys.argv
                else None
            )
            main_core(scenario, levels)
            return
        if scenario != "llm":
            sys.exit(f"unknown scenario {scenario!r}: expected llm, cpu, concurrency or short")
        n = int(sys.argv[sys.argv.index("--n") + 1]) if "--n" in sys.argv else None
        only = sys.argv[sys.argv.index("--only") + 1].split(",") if "--only" in sys.argv else None
        main_llm(n, only)
        return
    started = time.monotonic()
    st = Settings()
    echo(
        f"cosyvoice-stream benchmark{' (QUICK)' if QUICK else ''}: RTT {list(st.rtts_ms)} ms, first packet "
        f"{st.first_packet_delay_ms:g} ms, RTF {st.rtf}, {st.chunk_ms} ms frames"
    )
    results: dict[str, Any] = {
        "settings": st.__dict__.copy(),
        "machine": machine_info(),
        "started": time.time(),
    }
    results["settings"]["rtts_ms"] = list(st.rtts_ms)

    # 1. environments
    echo("[1/7] environments")
    problems = envs.ensure(["dashscope", "pipecat", "livekit", "tools"], echo=echo)
    for name, problem in problems.items():
        echo(f"  ! {name}: {problem}")
    available = adapters_available()
    if available["server"] is not None:
        echo(f"  ! the embedded server does not import: {available['server']}")
        sys.exit(1)
    clients = []
    for c in CLIENTS:
        if c.key in available and available[c.key] is not None:
            echo(f"  ! {c.label}: not available ({available[c.key]})")
            continue
        if c.env != "project" and c.env in problems:
            continue
        clients.append(c)
    results["clients"] = {
        c.key: {"label": c.label, "ours": c.ours, "framework": c.framework} for c in CLIENTS
    }
    results["unavailable"] = {
        c.key: (available.get(c.key) or problems.get(c.env)) for c in CLIENTS if c not in clients
    }
    results["versions"] = {
        "project": envs.versions(
            "project", ["cosyvoice-stream", "websockets", "pipecat-ai", "livekit-agents", "numpy", "soxr"]
        ),
        "dashscope": envs.versions("dashscope", ["dashscope", "websocket-client"]),
        "pipecat": envs.versions("pipecat", ["pipecat-dashscope", "pipecat-ai", "dashscope", "nltk"]),
        "livekit": envs.versions("livekit", ["livekit-plugins-aliyun", "livekit-agents", "aiohttp"]),
        "tools": envs.versions("tools", ["matplotlib", "py-spy", "pyinstrument"]),
    }
    echo(f"  ready after {time.monotonic() - started:.0f} s")

    # 2. server and proxies
    echo("[2/7] embedded server (CPU 1) and latency proxies")
    common = {"chunk_ms": st.chunk_ms, "tone_word_ms": st.tone_word_ms, "tone_gap_ms": st.tone_gap_ms}
    configs = {
        "timed": {**common, "first_packet_delay_ms": st.first_packet_delay_ms, "rtf": st.rtf},
        # CPU per audio second: no delays, and words at the pace of speech (the tone engine's
        # default 200 + 50 ms, 4 words/s), so per-word work (word timestamps) weighs as it would.
        "fast": {
            "chunk_ms": st.chunk_ms,
            "tone_word_ms": st.cpu_tone_word_ms,
            "tone_gap_ms": st.cpu_tone_gap_ms,
            "first_packet_delay_ms": 0.0,
            "rtf": 0.0,
        },
    }
    backend = Background([sys.executable, "-m", "benchmarks.backend", json.dumps(configs)], SERVER_CPU)
    servers = backend.info["servers"]
    # The concurrency server gets a process (and so an event loop) of its own.
    conc_config = {
        **configs["timed"],
        "tone_word_ms": st.conc_tone_word_ms,
        "tone_gap_ms": st.conc_tone_gap_ms,
    }
    conc_backend = Background(
        [sys.executable, "-m", "benchmarks.backend", json.dumps({"conc": conc_config})],
        SERVER_CPU,
        BENCH_GC="between-levels",
    )
    host_port = f"127.0.0.1:{servers['timed']['port']}"
    proxy_argv = [
        sys.executable,
        "-m",
        "benchmarks.proxy",
        "--upstream",
        host_port,
        "--handshake-rtts",
        str(st.handshake_rtts),
        "--cpu",
        SERVER_CPU,
    ]
    for rtt in st.rtts_ms:
        proxy_argv += ["--rtt-ms", str(rtt)]
    proxy = Background(proxy_argv, SERVER_CPU)
    urls = {int(p["rtt_ms"]): p["url"] for p in proxy.info["proxies"]}
    try:
        _measure(
            st,
            clients,
            urls,
            servers,
            conc_backend,
            results,
            started,
        )
    finally:
        proxy.stop()
        backend.stop()
        conc_backend.stop()

    # 7. report
    echo("[7/7] report and plot")
    results["elapsed_s"] = time.monotonic() - started
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    report(results)


def main_llm(n: int | None, only: list[str] | None = None) -> None:
    """Scenario "llm" alone: its figures go to .bench/results-llm.json and their section of
    docs/benchmarks.md (the other sections are left as they are). ``only``: measure these
    clients (and the floor) again, keeping the other clients' figures of the last run."""
    started = time.monotonic()
    st = Settings()
    if n is not None:
        st.n_llm = n
    echo(
        f"scenario llm: {st.n_llm} warm utterances per cell, {list(st.llm_token_rates)} tokens/s, RTT {list(st.rtts_ms)} ms"
    )
    problems = envs.ensure(["dashscope", "pipecat", "livekit", "tools"], echo=echo)
    for name, problem in problems.items():
        echo(f"  ! {name}: {problem}")
    available = adapters_available()
    clients = [
        c
        for c in CLIENTS
        if available.get(c.key) is None
        and not (c.env != "project" and c.env in problems)
        and (only is None or c.key in only)
    ]
    results: dict[str, Any] = {
        "settings": {**st.__dict__, "rtts_ms": list(st.rtts_ms), "llm_token_rates": list(st.llm_token_rates)},
        "machine": machine_info(),
        "started": time.time(),
        "clients": {c.key: {"label": c.label, "ours": c.ours, "framework": c.framework} for c in CLIENTS},
    }
    timed = {
        "chunk_ms": st.chunk_ms,
        "tone_word_ms": st.tone_word_ms,
        "tone_gap_ms": st.tone_gap_ms,
        "first_packet_delay_ms": st.first_packet_delay_ms,
        "rtf": st.rtf,
    }
    backend = Background(
        [sys.executable, "-m", "benchmarks.backend", json.dumps({"timed": timed})], SERVER_CPU
    )
    host_port = f"127.0.0.1:{backend.info['servers']['timed']['port']}"
    proxy_argv = [sys.executable, "-m", "benchmarks.proxy", "--upstream", host_port]
    proxy_argv += ["--handshake-rtts", str(st.handshake_rtts), "--cpu", SERVER_CPU]
    for rtt in st.rtts_ms:
        proxy_argv += ["--rtt-ms", str(rtt)]
    proxy = Background(proxy_argv, SERVER_CPU)
    urls = {int(p["rtt_ms"]): p["url"] for p in proxy.info["proxies"]}
    try:
        raw = Client("raw", "bare WebSocket client", "project", "raw_floor.py")
        results["expected_bytes"] = run_driver(raw, {"scenario": "bytes", "url": urls[0]})
        llm.measure(st, raw, clients, urls, results, run_parallel, echo)
    finally:
        proxy.stop()
        backend.stop()
    results["elapsed_s"] = time.monotonic() - started
    path = envs.BENCH_DIR / "results-llm.json"
    path.parent.mkdir(exist_ok=True)
    if only is not None and path.exists():
        previous = json.loads(path.read_text()).get("llm", {}).get("clients", {})
        results["llm"]["clients"] = {**previous, **results["llm"]["clients"]}
    if "--note" in sys.argv:
        results["llm"]["note"] = sys.argv[sys.argv.index("--note") + 1]
    path.write_text(json.dumps(results, indent=1))
    error = llm.plot(path, ROOT / "docs" / llm.PLOT)
    if error:
        echo(f"  ! plot failed: {error}")
    llm.write_doc(results, ROOT / "docs" / "benchmarks.md")
    echo(f"  wrote {path.relative_to(ROOT)}, docs/{llm.PLOT} and its section of docs/benchmarks.md")
    for line in llm.section(results):
        if line.startswith("- "):
            echo(line)


def main_core(scenario: str, levels: tuple[int, ...] | None) -> None:
    """Scenario "cpu", "concurrency" or "short" alone, our core only: figures are printed and
    written to ``.bench/results-<scenario>.json`` (docs/benchmarks.md is left as it is)."""
    st = Settings()
    if levels is not None:
        st.concurrency_levels = levels
    core = CLIENTS[0]
    results: dict[str, Any] = {
        "settings": st.__dict__.copy(),
        "machine": machine_info(),
        "started": time.time(),
    }
    results["settings"]["concurrency_levels"] = list(st.concurrency_levels)
    results["settings"]["rtts_ms"] = list(st.rtts_ms)
    timed = {
        "chunk_ms": st.chunk_ms,
        "first_packet_delay_ms": st.first_packet_delay_ms,
        "rtf": st.rtf,
        "tone_word_ms": st.conc_tone_word_ms,
        "tone_gap_ms": st.conc_tone_gap_ms,
    }
    fast = {
        "chunk_ms": st.chunk_ms,
        "tone_word_ms": st.cpu_tone_word_ms,
        "tone_gap_ms": st.cpu_tone_gap_ms,
        "first_packet_delay_ms": 0.0,
        "rtf": 0.0,
    }
    backend = Background(
        [sys.executable, "-m", "benchmarks.backend", json.dumps({"conc": timed, "fast": fast})],
        SERVER_CPU,
        BENCH_GC="between-levels",
    )
    servers = backend.info["servers"]
    try:
        if scenario == "cpu":
            _measure_cpu(st, core, servers["fast"]["url"], results)
        elif scenario == "short":
            _measure_short(st, core, backend, results)
        else:
            _measure_concurrency(st, core, backend, results)
    finally:
        backend.stop()
    path = envs.BENCH_DIR / f"results-{scenario}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    echo(f"  wrote {path.relative_to(ROOT)}")


def _measure_cpu(st: Settings, core: Client, url: str, results: dict) -> None:
    """Client CPU per audio second of the core, long then short utterances back to back."""
    raw = Client("raw", "bare WebSocket client", "project", "raw_floor.py")
    fast_bytes = run_driver(raw, {"scenario": "bytes", "url": url})
    cpu: dict[str, Any] = {}
    for rate in st.cpu_rates:
        spec = {
            "scenario": "cpu",
            "url": url,
            "sample_rate": rate,
            "utterances": st.cpu_utterances,
            "rounds": st.cpu_rounds,
            "expected_bytes": fast_bytes,
        }
        cpu[str(rate)] = r = run_driver(core, spec, timeout=300)
        echo(f"  core, long utterances, {rate} Hz: " + _cpu_cell(r))
    spec = {
        "scenario": "cpu",
        "url": url,
        "sample_rate": 24000,
        "utterances": st.cpu_utterances * 5,
        "rounds": st.cpu_rounds,
        "utterance": "short",
    }
    cpu["short-24000"] = r = run_driver(core, spec, timeout=300)
    echo("  core, short utterances, 24000 Hz: " + _cpu_cell(r))
    results["cpu"] = {"ours-core": cpu}


def _cpu_cell(r: dict) -> str:
    if "cpu_ms_per_audio_s" in r:
        return f"{r['cpu_ms_per_audio_s']:.2f} ms per audio second"
    return "error: " + str(r.get("error", "?"))[:300]


def _conc_line(r: dict) -> str:
    server = f", server {r['server_cpu_util'] * 100:.0f}%" if r.get("server_cpu_util") is not None else ""
    cpu = r.get("cpu_ms_per_audio_s")
    return (
        f"{late_frames(r)}, worst {r['worst_late_ms']} ms, longest stall server {r['server_stall_max_ms']} / client "
        f"{r['client_stall_max_ms']} ms, {r['errors']} errors, loop lag "
        f"p99 {r['loop_lag']['p99_ms']} ms, client CPU {r['cpu_util'] * 100:.0f}%"
        + (f" ({cpu:.2f} ms per audio second)" if cpu else "")
        + server
        + f"; {r['idle_conn_kib']:.0f} KiB/idle connection, {r['active_stream_kib']:.0f} KiB/active stream"
    )


#: A late frame is put down to a stall (of the server's or the client's event loop) that
#: lasted at least as long as the frame was late, began before the frame was delivered and
#: ended at most this long before: the stall held the frame back past its due time. (A
#: stall's end is when the probe's tick ran again, which can be after the first sends that
#: followed the stall, so the frame may arrive before the recorded end.)
STALL_WINDOW_S = 0.1


def _explained(late: list, stalls: list) -> list[bool]:
    """For each late frame (delivered, seconds late): was it held back by one of ``stalls``?"""
    return [
        any(end - lasted <= at <= end + STALL_WINDOW_S and lasted >= by for end, lasted in stalls)
        for at, by in late
    ]


def _run_level(core: Client, backend: Background, spec: dict) -> dict:
    """One concurrency level in a fresh driver, its late frames set against both processes'
    stalls: ``late_after_server_stall`` / ``late_after_client_stall`` count the late frames
    each explains, ``late_unexplained`` those neither does."""
    backend.ask("collect")  # the stand-in's garbage collection, and its stalls so far: not in this level
    r = run_driver(core, spec, timeout=300)
    server = backend.stalls()
    if "error" in r:
        return r
    late = r.pop("late_events")
    client = r.pop("client_stalls")
    by_server, by_client = _explained(late, server), _explained(late, client)
    r["late_after_server_stall"] = sum(by_server)
    r["late_after_client_stall"] = sum(by_client)
    r["late_unexplained"] = sum(not (a or b) for a, b in zip(by_server, by_client, strict=True))
    r["server_stall_max_ms"] = round(max((d for _, d in server), default=0.0) * 1000, 1)
    r["client_stall_max_ms"] = round(max((d for _, d in client), default=0.0) * 1000, 1)
    if late:  # the evidence behind the counts, for whoever wants to check them
        r["late_sample"] = [
            [round(by * 1000, 1), a, b] for (_, by), a, b in zip(late, by_server, by_client, strict=True)
        ][:50]
    return r


def _conc_spec(st: Settings, backend: Background, n: int, utterance: str) -> dict:
    spec: dict[str, Any] = {
        "scenario": "concurrency",
        "url": backend.info["servers"]["conc"]["url"],
        "streams": n,
        "stagger_s": st.concurrency_stagger_s,
        "server_pid": backend.proc.pid,
        "utterance": utterance,
    }
    if utterance == "short":
        spec.update(turns=st.short_turns, turn_gap_s=st.short_turn_gap_s)
    return spec


def _measure_short(st: Settings, core: Client, backend: Background, results: dict) -> None:
    """``short_streams`` voice agents at once, each saying ``short_turns`` 2.4 s replies."""
    r = _run_level(core, backend, _conc_spec(st, backend, st.short_streams, "short"))
    if "error" in r:
        echo(f"  ! short utterances: {r['error'][:300]}")
    else:
        echo(f"  {st.short_streams} streams x {st.short_turns} short utterances: " + _conc_line(r))
    results["short"] = r


def _measure_concurrency(st: Settings, core: Client, backend: Background, results: dict) -> None:
    """The ramp of N real-time streams, long utterances then short ones. Each ramp stops
    at its first level where the client falls behind: an error, or a late frame that no
    stall of the server held back. ``best``: the highest level with no late frame at all."""
    for utterance, key in (("long", "concurrency"), ("short", "concurrency_short")):
        levels = []
        best = None
        for n in st.concurrency_levels:
            r = _run_level(core, backend, _conc_spec(st, backend, n, utterance))
            if "error" in r:
                echo(f"  ! {n} streams ({utterance}): {r['error'][:300]}")
                levels.append({"streams": n, "error": r["error"]})
                break
            levels.append(r)
            echo(f"  {n:>5} streams ({utterance}): " + _conc_line(r))
            if r["errors"] or r["late_frames"] > r["late_after_server_stall"]:
                break
            if not r["late_frames"]:
                best = r
        results[key] = {"levels": levels, "best": best}


def report(results: dict) -> None:
    """docs/benchmarks.md, the plot and the headline, from ``results``."""
    plot = ROOT / "docs" / "benchmarks-ttfa.png"
    proc = subprocess.run(
        [str(envs.ENVS["tools"].python), "-m", "benchmarks.plot", str(RESULTS), str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        echo(f"  ! plot failed: {proc.stderr.strip()[-500:]}")
    if results.get("llm"):
        error = llm.plot(RESULTS, ROOT / "docs" / llm.PLOT)
        if error:
            echo(f"  ! LLM scenario plot failed: {error}")
    write_report(results, ROOT / "docs" / "benchmarks.md")
    echo(f"  wrote docs/benchmarks.md, docs/benchmarks-ttfa.png, {RESULTS.relative_to(ROOT)}")
    echo(f"  total {results['elapsed_s'] / 60:.1f} min")
    echo("")
    echo("Headline")
    for line in headline_lines(results):
        echo(line)


def _measure(
    st: Settings,
    clients: list[Client],
    urls: dict[int, str],
    servers: dict,
    conc_backend: Background,
    results: dict,
    started: float,
) -> None:
    # 3 + 4. the floor (checked with a bare WebSocket client) and time to first audio. Each client's
    # three RTTs run side by side, and so do the clients of one group: first the bare client with
    # ours, then the peers. Every driver sleeps almost all the time; the client core stays mostly idle.
    echo(
        f"[3/7] time to first audio: floor, then {st.n_warm} warm + {st.n_cold} cold utterances per cell; "
        "RTTs and clients of a group run side by side"
    )
    raw = Client("raw", "bare WebSocket client", "project", "raw_floor.py")

    def ttfa_spec(rtt: int) -> dict:
        return {
            "scenario": "ttfa",
            # The sentence-end figures time the sentence-end path: with the early first-clause
            # flush, our audio would start at "Sure," before the clock does (scenario "llm"
            # measures it, with every client's defaults).
            "early_flush": False,
            "url": urls[rtt],
            "gap_s": st.gap_s(rtt),
            "n_warm": st.n_warm,
            "n_cold": st.n_cold,
            "token_period_s": st.token_period_s,
            "expected_bytes": results.get("expected_bytes", {"text": 24000, "long": 249600}),
        }

    groups = [[raw] + [c for c in clients if c.ours], [c for c in clients if not c.ours]]
    ttfa: dict[str, Any] = {}
    floor: dict[str, Any] = {}
    for group in groups:
        if not group:
            continue
        t0 = time.monotonic()
        jobs = []
        for c in group:
            for rtt in st.rtts_ms:
                spec = ttfa_spec(rtt)
                if c is raw:
                    spec["n_cold"] = 10
                jobs.append((f"{c.key}@{rtt}", c, spec))
        out = run_parallel(jobs, timeout=600)
        for c in group:
            if c is raw:
                for rtt in st.rtts_ms:
                    r = out[f"raw@{rtt}"]
                    floor[str(rtt)] = {"computed": rtt + st.first_packet_delay_ms}
                    if "error" in r:
                        echo(f"  ! bare client at {rtt} ms: {r['error'][:300]}")
                        continue
                    results["expected_bytes"] = r.get("bytes", results.get("expected_bytes"))
                    floor[str(rtt)].update(
                        {
                            "whole": summary(r["whole"]["warm"]),
                            "tokens": summary(r["tokens"]["warm"]),
                            "cold_naive": summary(r["cold_naive"]),
                        }
                    )
                    f = floor[str(rtt)]
                    echo(
                        f"  floor at {rtt:>3} ms RTT: computed {f['computed']:.0f} ms; bare client "
                        f"{f['whole']['median']:.1f} ms whole, {f['tokens']['median']:.1f} ms tokens; its naive "
                        f"cold start {f['cold_naive']['median']:.0f} ms"
                    )
                continue
            ttfa[c.key] = {}
            for rtt in st.rtts_ms:
                r = out[f"{c.key}@{rtt}"]
                if "error" in r:
                    ttfa[c.key][str(rtt)] = {"error": r["error"]}
                    echo(f"  ! {c.key} at {rtt} ms: {r['error'][:300]}")
                    continue
                cell: dict[str, Any] = {}
                for mode in ("whole", "tokens"):
                    m = r.get(mode, {})
                    cell[mode] = {
                        k: summary(m.get(k)) for k in ("cold", "warm", "warm_object_pool") if m.get(k)
                    }
                    if m.get("note"):
                        cell[mode]["note"] = m["note"]
                ttfa[c.key][str(rtt)] = cell
            line = []
            for rtt in st.rtts_ms:
                cell = ttfa[c.key][str(rtt)]
                w = (cell.get("whole") or {}).get("warm")
                t = (cell.get("tokens") or {}).get("warm")
                line.append(f"{rtt}: {w['median']:.1f}/{t['median']:.1f}" if w and t else f"{rtt}: error")
            echo(f"  {c.key:<18} warm median whole/tokens (ms) by RTT  " + "; ".join(line))
        echo(f"  group done in {time.monotonic() - t0:.0f} s")
    results["floor"] = floor
    results["ttfa"] = ttfa
    expected_bytes = results.get("expected_bytes") or {"text": 24000, "long": 249600}

    echo(f"[3b/7] LLM token stream, first token -> first audio ({st.n_llm} per cell)")
    llm.measure(st, raw, clients, urls, results, run_parallel, echo)

    # 5. interruption (clients of a group side by side) and CPU (one client at a time)
    echo(
        f"[4/7] interruption at {st.interrupt_rtt_ms} ms RTT ({st.n_interrupt} per client) "
        f"({time.monotonic() - started:.0f} s so far)"
    )
    interrupt: dict[str, Any] = {}
    ispec = {
        "scenario": "interrupt",
        "url": urls[st.interrupt_rtt_ms],
        "gap_s": st.gap_s(st.interrupt_rtt_ms),
        "n": st.n_interrupt,
        "interrupt_after_bytes": st.interrupt_after_bytes,
        "expected_bytes": expected_bytes,
    }
    iout: dict[str, dict] = {}
    for group in ([c for c in clients if c.ours], [c for c in clients if not c.ours]):
        iout.update(run_parallel([(c.key, c, ispec) for c in group], timeout=300))
    for c in clients:
        r = iout.get(c.key, {"error": "not run"})
        if "error" in r:
            interrupt[c.key] = {"error": r["error"]}
            echo(f"  ! {c.key} interrupt: {r['error'][:300]}")
            continue
        trials = [t for t in r["trials"] if "error" not in t]
        failed = [t["error"] for t in r["trials"] if "error" in t]
        if not trials:
            interrupt[c.key] = {"error": "; ".join(failed)[:300] or "no trial"}
            echo(f"  ! {c.key} interrupt: {interrupt[c.key]['error']}")
            continue
        interrupt[c.key] = {
            "n": len(trials),
            "failed_trials": failed,
            "stale_bytes_total": sum(t["stale_bytes"] for t in trials),
            "stale_bytes_max": max(t["stale_bytes"] for t in trials),
            "trials_with_stale": sum(1 for t in trials if t["stale_bytes"]),
            "last_frame_after_ms": summary([t["last_frame_after_ms"] for t in trials]),
            "cancel_call_ms": summary([t["cancel_call_ms"] for t in trials]),
            "next_ttfa_ms": summary([t["next_ttfa_ms"] for t in trials if t["next_ttfa_ms"] is not None]),
        }
        i = interrupt[c.key]
        echo(
            f"  {c.key:<18} stale bytes {i['stale_bytes_total']} in {i['trials_with_stale']}/{i['n']} trials; "
            f"last stale frame +{i['last_frame_after_ms']['median']:.1f} ms; cancel blocks "
            f"{i['cancel_call_ms']['median']:.1f} ms; next TTFA {(i['next_ttfa_ms'] or {}).get('median', float('nan')):.1f} ms"
        )
    results["interrupt"] = interrupt

    echo(
        f"[5/7] client CPU per audio second, one client at a time ({time.monotonic() - started:.0f} s so far)"
    )
    fast_bytes = run_driver(raw, {"scenario": "bytes", "url": servers["fast"]["url"]})
    if "error" in fast_bytes:
        echo(f"  ! audio bytes on the CPU server: {fast_bytes['error'][:200]}")
        fast_bytes = {"text": expected_bytes["text"] * 5, "long": expected_bytes["long"] * 5}
    results["cpu_expected_bytes"] = fast_bytes
    cpu: dict[str, Any] = {}
    for c in clients:
        cpu[c.key] = {}
        for rate in st.cpu_rates:
            r = run_driver(
                c,
                {
                    "scenario": "cpu",
                    "url": servers["fast"]["url"],
                    "sample_rate": rate,
                    "utterances": st.cpu_utterances,
                    "rounds": st.cpu_rounds,
                    "expected_bytes": fast_bytes,
                },
                timeout=300,
            )
            cpu[c.key][str(rate)] = r
        cells = []
        for rate in st.cpu_rates:
            r = cpu[c.key][str(rate)]
            cells.append(
                f"{rate}: "
                + (
                    f"{r['cpu_ms_per_audio_s']:.2f} ms"
                    if "cpu_ms_per_audio_s" in r
                    else ("n/a" if "unsupported" in r else "error")
                )
            )
        echo(f"  {c.key:<18} CPU per audio second  " + "; ".join(cells))
    results["cpu"] = cpu

    for c in clients:  # the adapters without word timestamps: the framework's share apart from per-word work
        if c.key not in ("ours-pipecat", "ours-livekit"):
            continue
        key = f"{c.key}-nowords"
        r = run_driver(
            c,
            {
                "scenario": "cpu",
                "url": servers["fast"]["url"],
                "sample_rate": 24000,
                "utterances": st.cpu_utterances,
                "rounds": st.cpu_rounds,
                "word_timestamps": False,
                "expected_bytes": fast_bytes,
            },
            timeout=300,
        )
        cpu[key] = {"24000": r}
        results["clients"][key] = {
            "label": c.label + ", word_timestamps=False",
            "ours": True,
            "framework": c.framework,
        }
        echo(
            f"  {key:<18} CPU per audio second  24000: "
            + (f"{r['cpu_ms_per_audio_s']:.2f} ms" if "cpu_ms_per_audio_s" in r else "error")
        )

    # profiles of our core's CPU path, with py-spy
    core = next((c for c in clients if c.key == "ours-core"), None)
    profiles: dict[str, Any] = {}
    if core is not None:
        from .profile import summarize

        for rate in st.cpu_rates:
            path = envs.BENCH_DIR / f"profile-core-{rate}.txt"
            r = run_driver(
                core,
                {
                    "scenario": "cpu",
                    "url": servers["fast"]["url"],
                    "sample_rate": rate,
                    "utterances": st.profile_utterances,
                    "rounds": 1,
                },
                profile_to=path,
            )
            profiles[str(rate)] = (
                {"run": r, **summarize(path)} if path.exists() else {"error": r.get("error")}
            )
    results["profiles"] = profiles

    # 6. concurrency
    echo(
        f"[6/7] concurrency: simultaneous real-time streams in one process on one core "
        f"({time.monotonic() - started:.0f} s so far)"
    )
    if core is not None:
        _measure_concurrency(st, core, conc_backend, results)
        echo(f"[6b/7] short utterances: {st.short_streams} voice agents x {st.short_turns} replies of 2.4 s")
        _measure_short(st, core, conc_backend, results)


if __name__ == "__main__":
    main()
