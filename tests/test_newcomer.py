"""What a newcomer tries first with the examples: the help they read and the errors they meet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIVEKIT_EXAMPLE = ROOT / "examples" / "livekit_agent.py"

pytest.importorskip("livekit.agents")


def _run_example(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DASHSCOPE_", "LIVEKIT_"))}
    return subprocess.run(
        [sys.executable, str(LIVEKIT_EXAMPLE), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def test_livekit_example_help_lists_both_modes() -> None:
    result = _run_example("--help")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--to-wav PATH" in result.stdout and "--engine {espeak,tone}" in result.stdout
    assert "console" in result.stdout and "PortAudio" in result.stdout


def test_livekit_console_without_portaudio_says_what_to_install() -> None:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass
    else:
        pytest.skip("PortAudio is installed here: the console would open the audio devices")
    result = _run_example("console")
    assert result.returncode == 1
    assert "console mode needs the PortAudio library" in result.stderr
    assert "libportaudio2" in result.stderr and "--to-wav" in result.stderr
    assert "Traceback" not in result.stderr
