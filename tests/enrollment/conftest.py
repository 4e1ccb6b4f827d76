"""Fixtures for voice cloning: an embedded server with its customization API, and samples."""

from __future__ import annotations

import http.server
import io
import os
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cosyvoice_stream.server import EmbeddedServer, ServerConfig, ServerHandle

# The official SDK reads this at import; tests must never point it at the cloud.
os.environ.pop("DASHSCOPE_HTTP_BASE_URL", None)

#: The key the test server accepts; every test checks it never shows up in an error.
API_KEY = "sk-enrollment-test-0123456789abcdef"


def wav_bytes(seconds: float, rate: int = 16_000, amplitude: int = 8000, width: int = 2) -> bytes:
    """A mono WAV with a voiced-ish tone (a 150 Hz fundamental with harmonics)."""
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in (1, 2, 3))
    pcm = (amplitude * signal / 1.84).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(width)
        writer.setframerate(rate)
        writer.writeframes(pcm.tobytes() if width == 2 else bytes(len(pcm) * width))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def enrollment_server() -> Iterator[ServerHandle]:
    """An embedded server (tone engine) requiring ``API_KEY``, with its cloning API on a free port."""
    handle = EmbeddedServer(ServerConfig(engine="tone", api_keys=frozenset({API_KEY}))).start_in_thread()
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of sample files: good.wav (8 s), other.wav (12 s), short.wav, long.wav, noise.bin."""
    directory = tmp_path_factory.mktemp("samples")
    (directory / "good.wav").write_bytes(wav_bytes(8.0))
    (directory / "other.wav").write_bytes(wav_bytes(12.0, rate=24_000))
    (directory / "short.wav").write_bytes(wav_bytes(2.0))
    (directory / "long.wav").write_bytes(wav_bytes(61.0))
    (directory / "lowrate.wav").write_bytes(wav_bytes(8.0, rate=8_000))
    (directory / "silent.wav").write_bytes(wav_bytes(8.0, amplitude=0))
    (directory / "noise.bin").write_bytes(b"this is not audio at all" * 100)
    (directory / "song.mp3").write_bytes(b"ID3\x03\x00\x00\x00" + bytes(2000))
    return directory


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the test output stays readable
        pass


@pytest.fixture(scope="module")
def sample_http(samples: Path) -> Iterator[str]:
    """A loopback HTTP server for ``samples``; yields its root URL (``http://127.0.0.1:PORT``)."""

    def handler(*args: object, **kwargs: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(samples), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
