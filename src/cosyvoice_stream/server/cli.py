"""Command-line front end: ``python -m cosyvoice_stream.server`` and ``cosyvoice-stream serve``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .config import ENGINES, FLUSH_MODES, WORD_TIME_ORIGINS, WORDS_PLACEMENTS, ServerConfig

API_KEYS_ENV = "COSYVOICE_SERVER_API_KEYS"


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's options to ``parser`` (used by ``cosyvoice-stream serve`` too)."""
    defaults = ServerConfig()
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8765, help="port to bind, 0 for any free port (default: 8765)"
    )
    parser.add_argument(
        "--engine", choices=ENGINES, default="espeak", help="speech engine (default: espeak, real speech)"
    )
    parser.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        default=None,
        metavar="KEY",
        help=f"accepted Bearer key (repeatable; also ${API_KEYS_ENV}, comma-separated);"
        " none: no authentication",
    )
    parser.add_argument(
        "--first-packet-delay-ms",
        type=float,
        default=defaults.first_packet_delay_ms,
        help="minimum delay from a sentence's text to its first audio (ms)",
    )
    parser.add_argument(
        "--rtf",
        type=float,
        default=defaults.rtf,
        help="pacing: seconds of synthesis per second of audio (0: as fast as possible)",
    )
    parser.add_argument("--chunk-ms", type=int, default=defaults.chunk_ms, help="audio per binary frame (ms)")
    parser.add_argument(
        "--word-timestamps-in",
        choices=WORDS_PLACEMENTS,
        default=defaults.word_timestamps_in,
        help="where word timestamps are sent",
    )
    parser.add_argument(
        "--word-time-origin",
        choices=WORD_TIME_ORIGINS,
        default=defaults.word_time_origin,
        help="word times relative to the task or to each sentence",
    )
    parser.add_argument(
        "--legacy-events",
        action="store_true",
        help="old dialect: result-generated without output.type and sentence index",
    )
    parser.add_argument(
        "--text-timeout",
        type=float,
        default=defaults.text_timeout_s,
        metavar="SECONDS",
        help="fail a task after this long without text (the service's 23 s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=defaults.idle_timeout_s,
        metavar="SECONDS",
        help="close a connection after this long without a task (the service's 60 s)",
    )
    parser.add_argument(
        "--max-message-bytes",
        type=int,
        default=defaults.max_message_bytes,
        help="largest client message accepted",
    )
    parser.add_argument(
        "--tone-word-ms", type=int, default=defaults.tone_word_ms, help="tone engine: word length"
    )
    parser.add_argument(
        "--tone-gap-ms", type=int, default=defaults.tone_gap_ms, help="tone engine: gap length"
    )
    parser.add_argument(
        "--enrollment-port",
        type=int,
        default=8766,
        help="port of the voice cloning HTTP API on --host, 0 for any free port (default: 8766)",
    )
    parser.add_argument(
        "--no-enrollment", action="store_true", help="do not serve the voice cloning HTTP API"
    )
    parser.add_argument(
        "--flush",
        choices=FLUSH_MODES,
        default=defaults.flush,
        help="what a flush message does: honour it, ignore it, or reject it (task-failed)",
    )
    parser.add_argument("--log-level", default="INFO", help="logging level (default: INFO)")


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    keys = list(args.api_keys or [])
    env_keys = os.environ.get(API_KEYS_ENV, "")
    keys.extend(k.strip() for k in env_keys.split(",") if k.strip())
    return ServerConfig(
        engine=args.engine,
        host=args.host,
        port=args.port,
        api_keys=frozenset(keys),
        first_packet_delay_ms=args.first_packet_delay_ms,
        rtf=args.rtf,
        chunk_ms=args.chunk_ms,
        word_timestamps_in=args.word_timestamps_in,
        word_time_origin=args.word_time_origin,
        legacy_events=args.legacy_events,
        text_timeout_s=args.text_timeout,
        idle_timeout_s=args.idle_timeout,
        max_message_bytes=args.max_message_bytes,
        tone_word_ms=args.tone_word_ms,
        tone_gap_ms=args.tone_gap_ms,
        enrollment=not args.no_enrollment,
        enrollment_port=args.enrollment_port,
        flush=args.flush,
    )


async def _serve(config: ServerConfig) -> None:
    from .app import EmbeddedServer

    server = EmbeddedServer(config)
    await server.start()
    auth = f"{len(config.api_keys)} API key(s)" if config.api_keys else "no authentication"
    print(f"CosyVoice embedded server ({config.engine} engine, {auth}) at {server.url}", flush=True)
    print(f"  export DASHSCOPE_WEBSOCKET_BASE_URL={server.url}", flush=True)
    if config.enrollment:
        print(f"  export DASHSCOPE_HTTP_BASE_URL={server.enrollment_url}  # voice cloning", flush=True)
    await server.serve_forever()


def serve_from_args(args: argparse.Namespace) -> None:
    """Run the server described by ``args`` until Ctrl-C."""
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        asyncio.run(_serve(config))
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cosyvoice_stream.server",
        description="A local DashScope-compatible CosyVoice WebSocket server with offline speech.",
    )
    add_serve_arguments(parser)
    serve_from_args(parser.parse_args(argv))
