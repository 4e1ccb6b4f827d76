"""The time-to-first-audio plot, drawn with matplotlib from the bench's own env.

python -m benchmarks.plot .bench/results.json docs/benchmarks-ttfa.png
"""

from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

STYLE = {
    "ours-core": ("#1f4e9c", "o", "-"),
    "ours-pipecat": ("#2f8fd8", "s", "-"),
    "ours-livekit": ("#55b6c9", "^", "-"),
    "sdk": ("#d62728", "D", "--"),
    "sdk-pool": ("#ff7f0e", "d", "--"),
    "pipecat-dashscope": ("#9467bd", "v", "--"),
    "livekit-aliyun": ("#8c564b", "P", "--"),
}


def main(src: str, dst: str) -> None:
    results = json.load(open(src))
    rtts = results["settings"]["rtts_ms"]
    st = results["settings"]
    fig, axes = plt.subplots(2, 2, figsize=(12, 9), sharex=True)
    titles = {"whole": "whole text at once", "tokens": "LLM token stream (1 token / 50 ms)"}
    for col, mode in enumerate(("whole", "tokens")):
        for row, warmth in enumerate(("warm", "cold")):
            ax = axes[row][col]
            floor = [results["floor"][str(r)]["computed"] for r in rtts]
            ax.plot(rtts, floor, color="black", lw=2.2, ls=":", label="floor (RTT + first packet)")
            series = []
            for key, meta in results["clients"].items():
                cells = results.get("ttfa", {}).get(key)
                if not cells:
                    continue
                series.append((key, meta["label"], warmth))
                if key == "sdk" and warmth == "warm":
                    series.append(
                        ("sdk-pool", "dashscope SDK + SpeechSynthesizerObjectPool", "warm_object_pool")
                    )
            for key, label, field in series:
                src_key = "sdk" if key == "sdk-pool" else key
                xs, med, p95 = [], [], []
                for r in rtts:
                    cell = results["ttfa"][src_key].get(str(r), {})
                    s = (cell.get(mode) or {}).get(field) if "error" not in cell else None
                    if s:
                        xs.append(r)
                        med.append(s["median"])
                        p95.append(s["p95"] - s["median"])
                if not xs:
                    continue
                color, marker, ls = STYLE.get(key, ("gray", "x", "-"))
                ax.errorbar(
                    xs,
                    med,
                    yerr=[[0] * len(xs), p95],
                    color=color,
                    marker=marker,
                    ls=ls,
                    lw=1.8,
                    capsize=3,
                    label=label,
                )
            ax.set_title(
                f"{warmth} ({'later utterances' if warmth == 'warm' else 'first utterance'}), {titles[mode]}",
                fontsize=10,
            )
            ax.grid(True, alpha=0.3)
            ax.set_ylim(bottom=0)
            if row == 1:
                ax.set_xlabel("round-trip time (ms)")
            if col == 0:
                ax.set_ylabel("time to first audio, median (ms); bar to p95")
            ax.set_xticks(rtts)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(
        f"CosyVoice time to first audio: first packet {st['first_packet_delay_ms']:g} ms, RTF {st['rtf']}, "
        f"connection set-up = {st['handshake_rtts']:g} + 1 RTT",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0.09, 1, 0.97))
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
