"""The wheel holds the three packages, the PEP 420 namespace intact, and the entry points."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_contents_and_entry_points(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("cosyvoice_stream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "cosyvoice_stream/__init__.py",
        "cosyvoice_stream/py.typed",
        "cosyvoice_stream/server/engines/espeak.py",
        "cosyvoice_stream/sync/__init__.py",
        "pipecat_cosyvoice/tts.py",
        "pipecat_cosyvoice/py.typed",
        "livekit/plugins/cosyvoice/tts.py",
        "livekit/plugins/cosyvoice/py.typed",
    ):
        assert required in names, required
    # PEP 420: the plugin must not shadow livekit-agents' namespace packages
    assert "livekit/__init__.py" not in names and "livekit/plugins/__init__.py" not in names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "pipecat = pipecat_cosyvoice.factory:create_tts" in entry_points
    assert "livekit = livekit.plugins.cosyvoice.factory:create_tts" in entry_points
    assert "cosyvoice = pipecat_cosyvoice.cli:app" in entry_points
    assert "cosyvoice-stream = cosyvoice_stream.cli:main" in entry_points
