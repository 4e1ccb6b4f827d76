"""examples/livekit_agent.py --to-wav: a real AgentSession into a WAV file, no LiveKit server."""

from __future__ import annotations

import os
import subprocess
import sys
import wave
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livekit_agent.py"


def test_example_writes_the_agents_speech_to_a_wav_file(tmp_path: Path) -> None:
    out = tmp_path / "agent.wav"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}  # embedded server
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--to-wav", str(out), "--engine", "tone", "--sample-rate", "16000"],
        capture_output=True,
        text=True,
        timeout=50,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "embedded server (tone engine)" in result.stdout
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() / 16000 > 5.0  # the greeting and the streamed reply
    # Both utterances, with the transcripts LiveKit built from the plugin's timed words.
    assert "transcript: Hello! I'm a LiveKit agent with a CosyVoice voice." in result.stdout
    assert "timestamps for the transcript. 你好，很高兴认识你。" in result.stdout
    assert result.stdout.count("utterance:") == 2 and "connection reused: True" in result.stdout
