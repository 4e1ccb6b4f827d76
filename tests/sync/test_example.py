"""examples/sdk_style.py runs offline against the embedded server (eSpeak NG)."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parents[2] / "examples" / "sdk_style.py"


def test_sdk_style_example(tmp_path: Path) -> None:
    pytest.importorskip("espeakng_loader")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out-dir", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "VoiceModelMismatchError" in result.stdout
    assert "interrupted after the first audio" in result.stdout
    assert (tmp_path / "sdk_interrupted.mp3").stat().st_size > 0
    assert (tmp_path / "sdk_call.mp3").stat().st_size > 1000
    assert (tmp_path / "sdk_callback.mp3").stat().st_size > 1000
    with wave.open(str(tmp_path / "sdk_streaming.wav")) as wav:
        assert wav.getframerate() == 22050 and wav.getnframes() > 22050
