"""The cosyvoice-stream command line against the embedded server, as a user runs it."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cosyvoice_stream import AsyncSynthesizer
from cosyvoice_stream.audio import read_wav
from cosyvoice_stream.cli import describe_target, main
from cosyvoice_stream.server import EmbeddedServer, ServerConfig

ROOT = Path(__file__).resolve().parents[1]


def test_voices_filtered_by_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["voices", "--model", "cosyvoice-v2"]) == 0
    out = capsys.readouterr().out
    assert "longxiaochun_v2" in out and "longanyang" not in out


def test_adapters_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["adapters"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"pipecat\s+pipecat_cosyvoice.factory:create_tts\s+available", out)
    assert re.search(r"livekit\s+livekit.plugins.cosyvoice.factory:create_tts\s+available", out)


def test_speak_writes_a_wav_and_reports_latency_and_billing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "hello.wav"
    assert (
        main(
            [
                "speak",
                "Hello there. 你好。",
                "-o",
                str(out_file),
                "--engine",
                "tone",
                "--sample-rate",
                "16000",
            ]
        )
        == 0
    )
    pcm, rate = read_wav(out_file.read_bytes())
    assert rate == 16000 and len(pcm) == 2 * 16000 * 4 * 0.25  # tone engine: 4 words of 250 ms
    out = capsys.readouterr().out
    assert "via embedded server" in out
    # the file's size and the PCM's, each what it is: a 44-byte header apart
    pcm_bytes = 2 * 16000 * 4 // 4
    assert f"(WAV, {pcm_bytes + 44} bytes: {pcm_bytes} bytes of 16-bit mono PCM at 16000 Hz, 1.00 s)" in out
    assert out_file.stat().st_size == pcm_bytes + 44
    assert re.search(r"first audio latency: \d+ ms; billed characters: 18", out)


def test_speak_pcm_to_a_non_wav_name_writes_raw_pcm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "x.pcm"
    args = ["speak", "Hello there.", "-o", str(out_file), "--format", "pcm", "--engine", "tone"]
    assert main(args) == 0
    raw = out_file.read_bytes()
    assert len(raw) == 2 * 24000 * 2 * 0.25 and not raw.startswith(b"RIFF")
    assert f"(raw PCM, no header: {len(raw)} bytes of 16-bit mono PCM at 24000 Hz" in capsys.readouterr().out


def test_speak_format_wav_is_one_wav_even_across_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "Two words. " * 250  # 2,750 characters: two tasks, one WAV header
    source = tmp_path / "long.txt"
    source.write_text(text, encoding="utf-8")
    out_file = tmp_path / "long.audio"
    assert main(["speak", "-f", str(source), "-o", str(out_file), "--format", "wav", "--engine", "tone"]) == 0
    pcm, rate = read_wav(out_file.read_bytes())
    assert rate == 24000 and len(pcm) == 2 * rate * 0.25 * 2 * 250
    assert b"RIFF" not in out_file.read_bytes()[4:]
    assert "(WAV, " in capsys.readouterr().out


async def test_speak_names_a_local_url_as_local_even_with_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-test-not-a-real-key")
    args = ["speak", "Local.", "-o", str(tmp_path / "a.wav")]
    # the server runs on this loop; the command runs its own in a thread, as from a shell
    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        assert await asyncio.to_thread(main, [*args, "--url", server.url]) == 0
        out = capsys.readouterr().out
        assert f"via local server at ws://127.0.0.1:{server.port}" in out and "cloud" not in out
        served = server.connections_opened
        assert served > 0
        monkeypatch.setenv("DASHSCOPE_WEBSOCKET_BASE_URL", server.url)
        assert await asyncio.to_thread(main, args) == 0
        out = capsys.readouterr().out
        assert f"via local server at ws://127.0.0.1:{server.port}" in out and "cloud" not in out
        assert server.connections_opened > served  # the text really went there


def test_speak_target_names() -> None:
    assert describe_target("ws://127.0.0.1:1/x", embedded=True) == "embedded server"
    assert describe_target("ws://[::1]:8765/x", embedded=False) == "local server at ws://[::1]:8765"
    assert describe_target("ws://localhost:8765/x", embedded=False) == "local server at ws://localhost:8765"
    assert (
        describe_target("wss://dashscope.aliyuncs.com/api-ws/v1/inference", embedded=False)
        == "cloud (dashscope.aliyuncs.com)"
    )


def test_speak_long_file_is_split_across_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "This sentence is here to make a long file. " * 60  # 2,580 characters: two tasks
    source = tmp_path / "long.txt"
    source.write_text(text, encoding="utf-8")
    assert main(["speak", "-f", str(source), "-o", str(tmp_path / "long.wav"), "--engine", "tone"]) == 0
    captured = capsys.readouterr()
    assert "2/2 parts" in captured.err
    pcm, rate = read_wav((tmp_path / "long.wav").read_bytes())
    assert len(pcm) == 2 * rate * 0.25 * 9 * 60  # every word of every part


def test_speak_errors_are_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["speak", "Hi.", "-o", str(tmp_path / "x.wav"), "--engine", "tone"]
    assert main([*args, "--voice", "longxiaochun_v2"]) == 1
    assert "voice='longxiaochun_v2' belongs to the cosyvoice-v2 models" in capsys.readouterr().err
    assert main([*args, "--volume", "300"]) == 1
    assert "volume=300 is invalid" in capsys.readouterr().err
    assert main(["speak", "   ", "-o", str(tmp_path / "x.wav")]) == 2
    assert "nothing to say" in capsys.readouterr().err


async def test_serve_runs_a_server_a_client_can_use() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cosyvoice_stream.cli",
        "serve",
        "--port",
        "0",
        "--engine",
        "tone",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = re.search(r"ws://127\.0\.0\.1:\d+/api-ws/v1/inference", line)
        assert url, line
        async with AsyncSynthesizer(url=url.group()) as synth:
            result = await asyncio.wait_for(synth.synthesize_audio("Served."), 10)
        assert len(result.audio) == 2 * 24000 * 0.25
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 10)


def test_examples_run_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DASHSCOPE_API_KEY", None)
    core = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "core_stream.py"), "--out", str(tmp_path / "core.wav")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert core.returncode == 0, core.stderr
    assert "time to first audio" in core.stdout and (tmp_path / "core.wav").stat().st_size > 48000
    out_dir = tmp_path / "not" / "there yet"  # the script makes it, as a user expects
    cli = subprocess.run(
        ["bash", str(ROOT / "examples" / "cli_usage.sh"), str(out_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert cli.returncode == 0, cli.stderr
    assert (out_dir / "hello.wav").stat().st_size > 10000 and (out_dir / "text.wav").stat().st_size > 10000
    assert "via embedded server" in cli.stdout
