"""Lifecycle of the server: async context, thread handle, the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest
from server_support import open_ws, synthesize
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as sync_connect

from cosyvoice_stream.server import EmbeddedServer, ServerConfig
from cosyvoice_stream.server.cli import add_serve_arguments, config_from_args


async def test_keyword_shortcut_and_restart_free_port() -> None:
    server = EmbeddedServer(engine="tone", chunk_ms=20)
    assert server.config.chunk_ms == 20 and server.tasks == [] and server.connections_opened == 0
    with pytest.raises(RuntimeError):
        _ = server.url
    async with server:
        first_port = server.port
        async with open_ws(server.url) as ws:
            got = await synthesize(ws, "Small frames.")
        assert len(got.frames) == 25  # 2 words = 500 ms in 20 ms frames
        assert server.active_connections in (0, 1)
    await server.stop()  # idempotent
    base = ServerConfig(engine="tone", tone_word_ms=100)
    async with EmbeddedServer(base, tone_gap_ms=0) as other:
        assert other.config.tone_word_ms == 100 and other.config.tone_gap_ms == 0
        assert other.port != 0 and first_port != 0


async def test_stop_closes_open_connections() -> None:
    server = EmbeddedServer(engine="tone")
    await server.start()
    async with open_ws(server.url) as ws:
        await asyncio.wait_for(server.stop(), 5)
        with pytest.raises(Exception):  # noqa: B017 - closed by the server (1001)
            await asyncio.wait_for(ws.recv(), 5)
        assert ws.close_code == 1001


def test_start_in_thread_for_synchronous_code() -> None:
    handle = EmbeddedServer(engine="tone").start_in_thread()
    try:
        assert handle.server is not None and handle.url.startswith("ws://127.0.0.1:")
        assert threading.current_thread() is threading.main_thread()
        with sync_connect(handle.url, open_timeout=5) as ws:
            ws.send(
                '{"header":{"action":"run-task","task_id":"s","streaming":"duplex"},'
                '"payload":{"model":"cosyvoice-v3-flash","parameters":{"voice":"longanyang","format":"pcm"},'
                '"input":{}}}'
            )
            assert '"task-started"' in str(ws.recv(timeout=5))
        assert handle.server.tasks[0].task_id == "s"
    finally:
        handle.stop()
    handle.stop()  # idempotent


def test_start_in_thread_reports_bind_errors() -> None:
    with EmbeddedServer(engine="tone").start_in_thread() as running:
        taken = running.server.port
        with pytest.raises(OSError):
            EmbeddedServer(engine="tone", port=taken).start_in_thread()


def test_cli_arguments() -> None:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    args = parser.parse_args(
        [
            "--port",
            "0",
            "--engine",
            "tone",
            "--api-key",
            "A",
            "--api-key",
            "B",
            "--first-packet-delay-ms",
            "150",
            "--rtf",
            "0.3",
            "--word-timestamps-in",
            "both",
            "--word-time-origin",
            "sentence",
            "--legacy-events",
            "--text-timeout",
            "5",
            "--idle-timeout",
            "9",
            "--chunk-ms",
            "40",
        ]
    )
    config = config_from_args(args)
    assert config.api_keys == frozenset({"A", "B"}) and config.engine == "tone"
    assert (config.first_packet_delay_ms, config.rtf, config.chunk_ms) == (150, 0.3, 40)
    assert (config.word_timestamps_in, config.word_time_origin, config.legacy_events) == (
        "both",
        "sentence",
        True,
    )
    assert (config.text_timeout_s, config.idle_timeout_s) == (5, 9)
    defaults = config_from_args(parser.parse_args([]))
    assert defaults.engine == "espeak" and defaults.host == "127.0.0.1" and defaults.port == 8765


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery")
def test_python_m_serves_until_ctrl_c() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cosyvoice_stream.server",
            "--port",
            "0",
            "--engine",
            "tone",
            "--api-key",
            "cli-key",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = ""
        assert proc.stdout is not None
        timer = threading.Timer(20, proc.kill)  # bound the blocking readline
        timer.start()
        try:
            line = proc.stdout.readline()
        finally:
            timer.cancel()
        assert "ws://127.0.0.1:" in line and "cli-key" not in line
        url = line.rsplit(" at ", 1)[1].strip()
        with pytest.raises(InvalidStatus):
            sync_connect(url, open_timeout=5).close()
        with sync_connect(url, open_timeout=5, additional_headers={"Authorization": "Bearer cli-key"}) as ws:
            ws.send("{broken")
            with pytest.raises(Exception):  # noqa: B017 - closed with 1007
                ws.recv(timeout=5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == 0
