"""Scenario "LLM token stream, first token -> first audio" (issue 13).

An LLM reply ("Well, tomorrow in Hangzhou, the weather looks sunny and
warm.") is streamed token by token at 20, 40 and 80 tokens per second over
0 / 50 / 150 ms round trips; the clock starts at the reply's FIRST token and
stops at the first audio. Every client runs with its defaults. The floor is
the first clause boundary (token 2) + one round trip + the server's
first-packet time; the bare WebSocket client measures it, sending the
protocol's flush right after that token.

Run on its own (the other scenarios are not run, their figures are kept):

    python -m benchmarks.run --scenario llm
"""

from __future__ import annotations

import json
import statistics
import subprocess
from pathlib import Path
from typing import Any

from . import envs

BEGIN, END = "<!-- llm-scenario:begin -->", "<!-- llm-scenario:end -->"
PLOT = "benchmarks-llm.png"
CLAUSE_TOKENS = 2  # "Well" "," : the first clause is complete with the second token


def floor_ms(rate: int, rtt_ms: int, first_packet_ms: float) -> float:
    """First clause boundary + one round trip + the server's first-packet time."""
    return (CLAUSE_TOKENS - 1) * 1000.0 / rate + rtt_ms + first_packet_ms


def measure(
    st: Any, raw: Any, clients: list[Any], urls: dict[int, str], results: dict, run_parallel: Any, echo: Any
) -> None:
    """Fill ``results["llm"]``: per client (and ``raw``, the bare client that measures the
    floor), RTT and token rate, the first-audio times (ms)."""
    spec_base = {
        "scenario": "llm",
        "n": st.n_llm,
        "token_rates": list(st.llm_token_rates),
        "expected_bytes": results.get("expected_bytes") or {},
    }
    out: dict[str, Any] = {}
    groups = [[raw] + [c for c in clients if c.ours], [c for c in clients if not c.ours]]
    for group in groups:
        jobs = [
            (f"{c.key}@{rtt}", c, {**spec_base, "url": urls[rtt], "gap_s": st.gap_s(rtt)})
            for c in group
            for rtt in st.rtts_ms
        ]
        done = run_parallel(jobs, timeout=900)
        for c in group:
            out[c.key] = {}
            for rtt in st.rtts_ms:
                r = done[f"{c.key}@{rtt}"]
                out[c.key][str(rtt)] = r
                if "error" in r:
                    echo(f"  ! {c.key} at {rtt} ms: {r['error'][:300]}")
            echo(f"  {c.key:<18} " + _line(out[c.key], st))
    results["llm"] = {
        "clients": out,
        "token_rates": list(st.llm_token_rates),
        "rtts_ms": list(st.rtts_ms),
        "first_packet_delay_ms": st.first_packet_delay_ms,
        "n": st.n_llm,
    }


def _median(values: Any) -> float | None:
    return statistics.median(values) if isinstance(values, list) and values else None


def _line(cells: dict, st: Any) -> str:
    parts = []
    for rtt in st.rtts_ms:
        r = cells.get(str(rtt), {})
        meds = [_median(r.get(str(rate))) for rate in st.llm_token_rates]
        parts.append(f"{rtt} ms: " + "/".join("-" if m is None else f"{m:.0f}" for m in meds))
    return (
        "median first audio (ms) at "
        + "/".join(str(r) for r in st.llm_token_rates)
        + " tok/s: "
        + "; ".join(parts)
    )


def section(results: dict) -> list[str]:
    """The markdown of the scenario (between markers, so a standalone run can replace it)."""
    llm = results.get("llm")
    if not llm:
        return []
    labels = {k: v["label"] for k, v in results.get("clients", {}).items()}
    labels["raw"] = "floor, measured (bare client, flush after the first clause)"
    rates, rtts, fpd = llm["token_rates"], llm["rtts_ms"], llm["first_packet_delay_ms"]
    cells = llm["clients"]
    lines = [
        BEGIN,
        "### LLM token stream: first token -> first audio",
        "",
        'The reply "Well, tomorrow in Hangzhou, the weather looks sunny and warm." streamed'
        " token by token (14 tokens); the clock starts at the FIRST token. Every client with its"
        f" defaults; median of {llm['n']} warm utterances per cell (ms). Floor = first clause"
        f" boundary (token 2) + one RTT + the server's first-packet time ({fpd:g} ms).",
        "",
    ]
    if llm.get("note"):
        lines += [llm["note"], ""]
    header = (
        "| client | " + " | ".join(f"{rtt} ms RTT, {rate} tok/s" for rtt in rtts for rate in rates) + " |"
    )
    lines += [header, "|---" * (1 + len(rtts) * len(rates)) + "|"]
    row = ["floor, computed"] + [f"{floor_ms(rate, rtt, fpd):.0f}" for rtt in rtts for rate in rates]
    lines.append("| " + " | ".join(row) + " |")
    for key, per_rtt in cells.items():
        row = [labels.get(key, key)]
        for rtt in rtts:
            r = per_rtt.get(str(rtt), {})
            for rate in rates:
                m = _median(r.get(str(rate)))
                row.append("error" if "error" in r else ("-" if m is None else f"{m:.1f}"))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *_ratios(cells, labels, rtts, rates, fpd), "", f"![LLM token stream]({PLOT})", "", END]
    return lines


def _ratios(cells: dict, labels: dict, rtts: list[int], rates: list[int], fpd: float) -> list[str]:
    """Ours against every peer and against the floor at 40 tokens/s, 50 ms RTT (the goal's cell)."""
    rtt, rate = (50 if 50 in rtts else rtts[0]), (40 if 40 in rates else rates[0])

    def med(key: str) -> float | None:
        return _median(cells.get(key, {}).get(str(rtt), {}).get(str(rate)))

    ours = [k for k in cells if k.startswith("ours-")]
    peers = [k for k in cells if k not in ours and k != "raw"]
    floor = floor_ms(rate, rtt, fpd)
    out = [f"At {rate} tokens/s and {rtt} ms RTT (goal: <= 0.6x every peer, within 5 ms of the floor):", ""]
    for key in ours:
        m = med(key)
        if m is None:
            continue
        vs = [f"{m / p:.2f}x {labels.get(k, k).split(' (')[0]}" for k in peers if (p := med(k))]
        out.append(
            f"- {labels.get(key, key)}: {m:.1f} ms, floor + {m - floor:.1f} ms; "
            + (", ".join(vs) or "no peer figure")
        )
    return out


def write_doc(results: dict, doc: Path) -> None:
    """Put the section into ``doc`` in place of the previous one (or before section 2)."""
    block = "\n".join(section(results))
    text = doc.read_text() if doc.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    elif "\n## 2." in text:
        head, rest = text.split("\n## 2.", 1)
        text = head + "\n" + block + "\n\n## 2." + rest
    else:
        text = text + "\n" + block + "\n"
    doc.write_text(text)


def plot(results_path: Path, dst: Path) -> str | None:
    """Draw the scenario's plot with the tools environment's matplotlib; None or the error."""
    proc = subprocess.run(
        [str(envs.ENVS["tools"].python), "-m", "benchmarks.plot_llm", str(results_path), str(dst)],
        cwd=envs.ROOT,
        capture_output=True,
        text=True,
    )
    return None if proc.returncode == 0 else proc.stderr.strip()[-500:]


def load(path: Path) -> dict:
    return json.loads(path.read_text())
