"""``pipecat cosyvoice ...``: CosyVoice commands for the Pipecat CLI.

Pipecat (1.14) mounts every Typer app registered in the ``pipecat_cli.extensions``
entry-point group as a sub-command; this package registers ``cosyvoice =
"pipecat_cosyvoice.cli:app"``. The ``pipecat`` command itself needs
``pip install "cosyvoice-stream[pipecat-cli]"``; without it the same commands run with
``python -m pipecat_cosyvoice.cli ...``.

    pipecat cosyvoice voices [--model v2] [--language en] [--supports timestamps] [--json]
    pipecat cosyvoice say "Hello there." -o hello.wav [--voice longanyang] [--sample-rate 16000]

``say`` synthesizes through a real Pipecat pipeline with ``CosyVoiceTTSService``.
Without an API key (``DASHSCOPE_API_KEY`` or ``--api-key``) and without ``--url``
it runs against the embedded offline server (eSpeak NG voices, no network).
"""

from __future__ import annotations

import asyncio
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from cosyvoice_stream.voices import DEFAULT_MODEL, DEFAULT_VOICE, FEATURES, MODEL_ALIASES
from cosyvoice_stream.voices_cli import VoiceFilterError, listing

app = typer.Typer(
    name="cosyvoice",
    help="Alibaba CosyVoice text-to-speech (DashScope) for Pipecat: list voices, synthesize to WAV.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command("voices")
def voices_command(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help=f"Only the voices of this model ({', '.join(MODEL_ALIASES)})."),
    ] = None,
    language: Annotated[
        str | None, typer.Option("--language", "-l", help="Only voices speaking this language (zh, en, ...).")
    ] = None,
    supports: Annotated[
        list[str] | None,
        typer.Option("--supports", help=f"Only voices supporting this ({', '.join(FEATURES)}); repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the CosyVoice voice catalogue (the same listing as `cosyvoice-stream voices`)."""
    try:
        text, note = listing(model, language, supports or (), as_json=as_json)
    except VoiceFilterError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    if text:
        typer.echo(text)
    if note:
        typer.echo(note, err=True)


@dataclass
class SayResult:
    """What ``say`` produced: the audio, word times (seconds) and figures."""

    audio: bytes = b""
    sample_rate: int = 0
    words: list[tuple[str, float]] = field(default_factory=list)
    ttfb: float | None = None
    first_audio: float | None = None
    errors: list[str] = field(default_factory=list)


async def synthesize(
    text: str,
    *,
    sample_rate: int,
    url: str | None,
    api_key: str | None,
    settings: dict[str, Any],
) -> SayResult:
    """Speak ``text`` through a Pipecat pipeline: CosyVoiceTTSService -> collector."""
    from pipecat.frames.frames import (
        EndFrame,
        Frame,
        MetricsFrame,
        TTSAudioRawFrame,
        TTSSpeakFrame,
        TTSTextFrame,
    )
    from pipecat.metrics.metrics import TTFBMetricsData
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from .tts import CosyVoiceTTSService, CosyVoiceTTSSettings

    result = SayResult(sample_rate=sample_rate)
    chunks: list[bytes] = []
    started = time.monotonic()

    class Collector(FrameProcessor):
        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, TTSAudioRawFrame):
                if result.first_audio is None:
                    result.first_audio = time.monotonic() - started
                chunks.append(frame.audio)
            elif isinstance(frame, TTSTextFrame) and frame.pts is not None:
                result.words.append((frame.text, frame.pts / 1e9))
            elif isinstance(frame, MetricsFrame):
                for data in frame.data:
                    if isinstance(data, TTFBMetricsData) and data.value > 0 and result.ttfb is None:
                        result.ttfb = data.value
            await self.push_frame(frame, direction)

    tts = CosyVoiceTTSService(
        url=url,
        api_key=api_key,
        settings=CosyVoiceTTSSettings(**settings),
    )

    @tts.event_handler("on_error")
    async def on_error(processor: object, error: object) -> None:
        result.errors.append(str(getattr(error, "error", error)))

    worker = PipelineWorker(
        Pipeline([tts, Collector()]),
        params=PipelineParams(audio_out_sample_rate=sample_rate, enable_metrics=True),
        cancel_on_idle_timeout=False,
    )
    await worker.queue_frames([TTSSpeakFrame(text), EndFrame()])
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()
    if result.words:
        origin = result.words[0][1]
        result.words = [(word, t - origin) for word, t in result.words]
    result.audio = b"".join(chunks)
    return result


async def _say_async(
    text: str,
    *,
    sample_rate: int,
    url: str | None,
    api_key: str | None,
    engine: str,
    settings: dict[str, Any],
) -> SayResult:
    if url is None and api_key is None:
        from cosyvoice_stream.server import EmbeddedServer

        typer.echo(
            f"no DASHSCOPE_API_KEY and no --url: using the embedded server ({engine} engine)", err=True
        )
        async with EmbeddedServer(engine=engine) as server:
            return await synthesize(
                text, sample_rate=sample_rate, url=server.url, api_key=None, settings=settings
            )
    return await synthesize(text, sample_rate=sample_rate, url=url, api_key=api_key, settings=settings)


@app.command("say")
def say_command(
    text: Annotated[str, typer.Argument(help="The text to speak.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The WAV file to write (16-bit mono).")],
    voice: Annotated[str, typer.Option("--voice", "-v", help="Voice id (see `voices`).")] = DEFAULT_VOICE,
    model: Annotated[str, typer.Option("--model", "-m", help="Model.")] = DEFAULT_MODEL,
    sample_rate: Annotated[
        int, typer.Option("--sample-rate", "-r", help="Output sample rate in Hz (any rate).")
    ] = 24000,
    speech_rate: Annotated[float, typer.Option("--speech-rate", help="0.5 .. 2.0")] = 1.0,
    pitch_rate: Annotated[float, typer.Option("--pitch-rate", help="0.5 .. 2.0")] = 1.0,
    volume: Annotated[int, typer.Option("--volume", help="0 .. 100")] = 50,
    language: Annotated[
        str | None, typer.Option("--language", "-l", help="zh, en, fr, de, ja, ko, ru")
    ] = None,
    instruction: Annotated[
        str | None, typer.Option("--instruction", help="Style instruction (v3 models).")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url", envvar="DASHSCOPE_WEBSOCKET_BASE_URL", help="WebSocket endpoint.", show_default=False
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", envvar="DASHSCOPE_API_KEY", help="DashScope API key.", show_default=False),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="Embedded server engine when offline: espeak or tone.")
    ] = "espeak",
    verbose: Annotated[bool, typer.Option("--verbose", help="Show Pipecat's log.")] = False,
) -> None:
    """Synthesize TEXT through a Pipecat pipeline and write it to a WAV file."""
    from loguru import logger

    from cosyvoice_stream import CosyVoiceError

    if not verbose:
        logger.disable("pipecat")  # errors are printed below

    settings: dict[str, Any] = {
        "voice": voice,
        "model": model,
        "speech_rate": speech_rate,
        "pitch_rate": pitch_rate,
        "volume": volume,
        "language": language,
        "instruction": instruction,
    }
    try:
        result = asyncio.run(
            _say_async(
                text, sample_rate=sample_rate, url=url, api_key=api_key, engine=engine, settings=settings
            )
        )
    except (CosyVoiceError, ValueError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(2) from None
    finally:
        logger.enable("pipecat")
    for error_text in result.errors:
        typer.echo(f"error: {error_text}", err=True)
    if not result.audio:
        typer.echo("no audio was produced", err=True)
        raise typer.Exit(1)
    with wave.open(str(output), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(result.sample_rate)
        wav.writeframes(result.audio)
    duration = len(result.audio) / (2 * result.sample_rate)
    typer.echo(f"wrote {output}: {duration:.2f} s at {result.sample_rate} Hz")
    if result.ttfb is not None:
        typer.echo(f"time to first byte: {result.ttfb * 1000:.0f} ms")
    if result.words:
        typer.echo("words: " + " ".join(f"{word}@{t:.2f}" for word, t in result.words))


def main() -> None:
    """``python -m pipecat_cosyvoice.cli``: the same commands without the ``pipecat`` CLI."""
    app(prog_name="python -m pipecat_cosyvoice.cli")


if __name__ == "__main__":
    main()
