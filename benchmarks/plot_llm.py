"""The plot of scenario "llm", drawn with matplotlib from the bench's own env.

python -m benchmarks.plot_llm .bench/results-llm.json docs/benchmarks-llm.png
"""

from __future__ import annotations

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from .plot import STYLE


def main(src: str, dst: str) -> None:
    results = json.load(open(src))
    llm = results["llm"]
    rates, rtts, fpd = llm["token_rates"], llm["rtts_ms"], llm["first_packet_delay_ms"]
    labels = {k: v["label"] for k, v in results.get("clients", {}).items()}
    labels["raw"] = "bare client + flush (measured floor)"
    fig, axes = plt.subplots(1, len(rtts), figsize=(5 * len(rtts), 4.5), sharey=True)
    axes = axes if len(rtts) > 1 else [axes]
    for ax, rtt in zip(axes, rtts, strict=True):
        floor = [1000.0 / r + rtt + fpd for r in rates]
        ax.plot(rates, floor, color="black", lw=2.2, ls=":", label="floor (clause + RTT + first packet)")
        for key, per_rtt in llm["clients"].items():
            cell = per_rtt.get(str(rtt), {})
            ys = [statistics.median(cell[str(r)]) if cell.get(str(r)) else None for r in rates]
            pts = [(x, y) for x, y in zip(rates, ys, strict=True) if y is not None]
            if not pts:
                continue
            color, marker, ls = STYLE.get(key, ("#777777", "x", "-."))
            ax.plot(*zip(*pts, strict=True), color=color, marker=marker, ls=ls, label=labels.get(key, key))
        ax.set_title(f"{rtt} ms RTT")
        ax.set_xlabel("LLM tokens per second")
        ax.set_xticks(rates)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("first token -> first audio, median (ms)")
    axes[-1].legend(fontsize=7, loc="upper right")
    fig.suptitle("LLM token stream: first token -> first audio (lower is better)")
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
