"""Summaries of py-spy profiles (``py-spy record --format raw``: collapsed stacks).

Import-time samples are left out (the driver's imports are not the client's
per-audio cost); what remains is where the CPU went while audio flowed.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")

_AREAS = (
    ("cosyvoice_stream/aio", "cosyvoice_stream.aio (stream, pool, connection)"),
    ("cosyvoice_stream/", "cosyvoice_stream core (protocol, session, audio)"),
    ("websockets/", "websockets (framing, reading)"),
    ("soxr", "soxr (resampling)"),
    ("numpy", "numpy"),
    ("json/", "json"),
    ("asyncio/", "asyncio event loop"),
    ("selectors", "asyncio event loop"),
    ("ours_core.py", "benchmark driver"),
    ("_common.py", "benchmark driver"),
)


def _frame(raw: str) -> tuple[str, str]:
    m = _FRAME.match(raw.strip())
    if not m:
        return raw.strip(), ""
    return m.group("func"), m.group("file")


def _short(func: str, file: str) -> str:
    path = file
    for marker in ("site-packages/", "/src/", "python3.11/", "benchmarks/peers/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{func} ({path})" if path else func


def _area(file: str) -> str:
    for needle, name in _AREAS:
        if needle in file:
            return name
    return "other"


def summarize(path: Path, top: int = 12) -> dict:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        stack, count = m.group(1), int(m.group(2))
        if "_find_and_load" in stack or "<frozen importlib" in stack:
            continue
        frames = [_frame(f) for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        self_time[_short(func, file)] += count
        areas[_area(file)] += count
        seen = set()
        for func, file in frames:
            key = _short(func, file)
            if key not in seen and ("cosyvoice_stream" in file or "websockets" in file or "soxr" in file):
                seen.add(key)
                inclusive[key] += count
    if not total:
        return {"samples": 0}
    return {
        "samples": total,
        "self": [(k, v / total) for k, v in self_time.most_common(top)],
        "inclusive": [(k, v / total) for k, v in inclusive.most_common(top)],
        "areas": [(k, v / total) for k, v in areas.most_common()],
    }
