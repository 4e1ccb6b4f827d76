"""The ``cosyvoice-stream`` command: serve, speak, voices, adapters."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from . import __version__
from .audio import pcm_duration, wav_bytes
from .endpoint import is_loopback
from .errors import CosyVoiceError
from .events import AudioChunk, SynthesisComplete
from .options import FORMATS
from .text import billable_characters, split_text
from .voices import DEFAULT_MODEL, DEFAULT_VOICE, MODELS
from .voices_cli import add_voices_arguments, run_voices

#: Billable characters per task when a long text is split (well under the 200,000 limit).
SPEAK_TASK_CHARACTERS = 2_000


@contextlib.asynccontextmanager
async def service_url(url: str | None, engine: str = "espeak") -> AsyncIterator[str | None]:
    """The cloud (None: the default endpoint) when a key is set or a URL given, else an embedded server."""
    if url or os.environ.get("DASHSCOPE_API_KEY") or os.environ.get("DASHSCOPE_WEBSOCKET_BASE_URL"):
        yield url
        return
    from .server import EmbeddedServer, ServerConfig

    async with EmbeddedServer(ServerConfig(engine=engine)) as server:  # type: ignore[arg-type]
        yield server.url


def describe_target(url: str, *, embedded: bool) -> str:
    """Where the audio came from, named from the URL actually connected to: an
    explicit ``--url`` or ``DASHSCOPE_WEBSOCKET_BASE_URL`` on loopback is a local
    server, not the cloud, whatever the key says."""
    if embedded:
        return "embedded server"
    parts = urlsplit(url)
    host = parts.hostname or ""
    if is_loopback(host):
        return f"local server at {parts.scheme}://{parts.netloc}"
    return f"cloud ({host})"


def output_kind(fmt: str, output: Path) -> tuple[str, bool]:
    """(the format to request from the service, whether to write a WAV header).

    ``pcm`` is written as raw PCM, as asked, unless the file name ends in
    ``.wav``; ``wav`` is requested as PCM and given one header here, because a
    long text is several tasks and their WAV streams cannot simply be joined."""
    if fmt == "wav":
        return "pcm", True
    if fmt == "pcm":
        return "pcm", output.suffix.lower() == ".wav"
    return fmt, False


def _progress(done: int, total: int) -> None:
    width = 30
    filled = width * done // max(total, 1)
    print(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} parts",
        end="",
        file=sys.stderr,
        flush=True,
    )


def _speak_input(args: argparse.Namespace) -> str | None:
    """The text to say, or None after printing why not. Everything is checked
    before synthesizing: the service bills the characters either way."""
    if args.text and args.file:
        print("error: give TEXT or -f FILE, not both", file=sys.stderr)
        return None
    text = args.text
    if args.file:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            print(f"error: cannot read {args.file}: it is not UTF-8 text", file=sys.stderr)
            return None
        except OSError as exc:
            print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
            return None
    out = Path(args.output)
    if not out.parent.is_dir() or out.is_dir():
        print(f"error: cannot write {out}: its folder does not exist or it is a folder", file=sys.stderr)
        return None
    if not text or not text.strip():
        print("error: nothing to say (give TEXT or -f FILE with text)", file=sys.stderr)
        return None
    return str(text)


async def _speak(args: argparse.Namespace, text: str) -> int:
    from .aio import AsyncSynthesizer

    out = Path(args.output)
    service_format, as_wav = output_kind(args.format, out)
    parts = split_text(text, SPEAK_TASK_CHARACTERS)
    async with service_url(args.url, args.engine) as url:
        synth = AsyncSynthesizer(
            model=args.model,
            voice=args.voice,
            format=service_format,
            sample_rate=args.sample_rate,
            url=url,
            speech_rate=args.speech_rate,
            pitch_rate=args.pitch_rate,
            volume=args.volume,
            language_hints=[args.language] if args.language else None,
        )
        where = describe_target(synth.url, embedded=url is not None and url != args.url)
        audio: list[bytes] = []
        first_audio: float | None = None
        billed = 0
        started = time.monotonic()
        async with synth:
            for i, part in enumerate(parts):
                if len(parts) > 1:
                    _progress(i, len(parts))
                async for event in synth.synthesize(part):
                    if isinstance(event, AudioChunk):
                        if first_audio is None:
                            first_audio = time.monotonic() - started
                        audio.append(event.audio)
                    elif isinstance(event, SynthesisComplete):
                        billed += event.metrics.billable_characters
            if len(parts) > 1:
                _progress(len(parts), len(parts))
                print(file=sys.stderr)
    data = b"".join(audio)
    content = wav_bytes(data, args.sample_rate) if as_wav else data
    await asyncio.to_thread(out.write_bytes, content)
    latency = f"{first_audio * 1000:.0f} ms" if first_audio is not None else "n/a"
    if service_format == "pcm":
        pcm = (
            f"{len(data)} bytes of 16-bit mono PCM at {args.sample_rate} Hz,"
            f" {pcm_duration(len(data), args.sample_rate):.2f} s"
        )
        kind = f"WAV, {len(content)} bytes: {pcm}" if as_wav else f"raw PCM, no header: {pcm}"
    else:
        kind = f"{service_format}, {len(content)} bytes"
    print(f"wrote {out} ({kind}) via {where}")
    print(
        f"first audio latency: {latency}; billed characters: {billed} (estimate {billable_characters(text)})"
    )
    return 0


def _adapters(_: argparse.Namespace) -> int:
    from .adapters import list_adapters

    for info in list_adapters():
        state = "available" if info.available else f"unavailable: {info.install_hint}"
        print(f"{info.name:<10} {info.target:<45} {state}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosyvoice-stream", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the embedded DashScope-compatible server")
    from .server.cli import add_serve_arguments

    add_serve_arguments(serve)

    speak = commands.add_parser(
        "speak", help="synthesize text to a file (cloud with DASHSCOPE_API_KEY, else local)"
    )
    speak.add_argument("text", nargs="?", help="the text to say")
    speak.add_argument("-f", "--file", help="read the text from this UTF-8 file")
    speak.add_argument(
        "-o",
        "--output",
        default="out.wav",
        help="output file; with --format pcm a name ending in .wav gets a WAV header, any other name"
        " is raw 16-bit mono PCM",
    )
    speak.add_argument("--model", default=DEFAULT_MODEL, choices=None, help=f"one of {', '.join(MODELS)}")
    speak.add_argument("--voice", default=DEFAULT_VOICE)
    speak.add_argument("--format", default="pcm", choices=FORMATS)
    speak.add_argument("--sample-rate", type=int, default=24000)
    speak.add_argument("--speech-rate", type=float, default=1.0)
    speak.add_argument("--pitch-rate", type=float, default=1.0)
    speak.add_argument("--volume", type=int, default=50)
    speak.add_argument("--language", help="language hint: zh, en, fr, de, ja, ko, ru")
    speak.add_argument(
        "--url",
        help="service URL, e.g. ws://127.0.0.1:8765/api-ws/v1/inference for `cosyvoice-stream serve`"
        " (default: DASHSCOPE_WEBSOCKET_BASE_URL, else the cloud with a key, else an embedded server)",
    )
    speak.add_argument(
        "--engine", default="espeak", choices=("espeak", "tone"), help="embedded server engine"
    )

    voices = commands.add_parser("voices", help="list the voice catalogue, or preview a voice")
    add_voices_arguments(voices)

    commands.add_parser("adapters", help="list the framework adapters and whether they are installed")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from .server.cli import serve_from_args

            serve_from_args(args)
            return 0
        if args.command == "speak":
            text = _speak_input(args)
            return 2 if text is None else asyncio.run(_speak(args, text))
        if args.command == "voices":
            return run_voices(args)
        return _adapters(args)
    except CosyVoiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
