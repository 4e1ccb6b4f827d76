"""A LiveKit voice agent that speaks with CosyVoice.

Two ways to run it:

    python examples/livekit_agent.py --to-wav out.wav [--text "..."] [--sample-rate 24000]

        No LiveKit server: a real AgentSession speaks a greeting and a reply
        streamed token by token into a WAV file. With DASHSCOPE_API_KEY set it
        uses the CosyVoice cloud service; without it, the embedded
        DashScope-compatible server runs in-process (eSpeak NG voices, or
        --engine tone), so nothing leaves the machine.

    python examples/livekit_agent.py console | dev | start

        LiveKit's own CLI (console: your microphone and speakers; dev/start:
        a worker for a LiveKit server, LIVEKIT_URL / LIVEKIT_API_KEY /
        LIVEKIT_API_SECRET). The session listens with LiveKit Inference STT,
        answers with LiveKit Inference LLM and speaks with CosyVoice: the
        cloud service with DASHSCOPE_API_KEY, else the embedded server.
        console needs the PortAudio library (sudo apt-get install libportaudio2
        on Debian/Ubuntu, brew install portaudio on macOS); LiveKit's options
        for each command: python examples/livekit_agent.py console --help
        (livekit-agents 1.8.9 marks this built-in CLI deprecated; the same
        worker without it: python -m livekit.agents start examples/livekit_agent.py)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from livekit import rtc
from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    JobContext,
    TurnHandlingOptions,
    cli,
    inference,
    llm,
    metrics,
)
from livekit.agents.voice import io
from livekit.plugins import cosyvoice  # imported at the top: plugins register on the main thread

from cosyvoice_stream.audio import wav_bytes

GREETING = "Hello! I'm a LiveKit agent with a CosyVoice voice."
REPLY = (
    "My words reach CosyVoice while the reply is still being written, "
    "and come back with timestamps for the transcript. 你好，很高兴认识你。"
)
TOKEN_INTERVAL_S = 0.02  # a brisk LLM: 50 tokens per second

logger = logging.getLogger("livekit_agent")


class Assistant(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="You are a friendly voice assistant. Keep answers short.")

    async def on_enter(self) -> None:
        self.session.say(GREETING)


# -- LiveKit mode: a worker (console / dev / start) ------------------------------

server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    url = None
    if not os.environ.get("DASHSCOPE_API_KEY"):  # no cloud key: speak through the embedded server
        from cosyvoice_stream.server import EmbeddedServer

        embedded = EmbeddedServer(engine="espeak")
        await embedded.start()
        ctx.add_shutdown_callback(embedded.stop)
        url = embedded.url
    session: AgentSession = AgentSession(
        stt=inference.STT("deepgram/nova-3", language="multi"),
        llm=inference.LLM("openai/gpt-4.1-mini"),
        tts=cosyvoice.TTS(base_url=url, voice="longanyang", language="en"),
    )

    @session.on("metrics_collected")
    def _log_metrics(ev) -> None:  # type: ignore[no-untyped-def]
        metrics.log_metrics(ev.metrics)

    await session.start(agent=Assistant(), room=ctx.room)


# -- WAV mode: no LiveKit server ---------------------------------------------------


class WavRecorder(io.AudioOutput):
    """The session's audio output: keeps the frames; playback "ends" when flushed."""

    def __init__(self) -> None:
        super().__init__(label="wav", capabilities=io.AudioOutputCapabilities(pause=False))
        self.frames: list[rtc.AudioFrame] = []
        self._segment = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._segment:
            self.on_playback_started(created_at=time.time())
        self._segment += frame.duration
        self.frames.append(frame)

    def flush(self) -> None:
        super().flush()
        self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        if self._segment:
            position, self._segment = self._segment, 0.0
            self.on_playback_finished(playback_position=position, interrupted=interrupted)


async def tokens(text: str) -> AsyncIterator[str]:
    """Pieces of a few characters, the way an LLM streams them."""
    for i in range(0, len(text), 4):
        yield text[i : i + 4]
        await asyncio.sleep(TOKEN_INTERVAL_S)


async def to_wav(args: argparse.Namespace) -> None:
    cloud = bool(os.environ.get("DASHSCOPE_API_KEY"))
    async with contextlib.AsyncExitStack() as stack:
        url = None
        if not cloud:
            from cosyvoice_stream.server import EmbeddedServer

            embedded = await stack.enter_async_context(EmbeddedServer(engine=args.engine))
            url = embedded.url
        print(
            f"CosyVoice: {'cloud service' if cloud else f'embedded server ({args.engine} engine) at {url}'}"
        )

        tts = cosyvoice.TTS(base_url=url, voice=args.voice, sample_rate=args.sample_rate, language="en")
        stack.push_async_callback(tts.aclose)
        tts_metrics: list[metrics.TTSMetrics] = []
        tts.on("metrics_collected", tts_metrics.append)

        # The recorder cannot pause, so LiveKit's false-interruption resume is off.
        session: AgentSession = AgentSession(
            tts=tts, turn_handling=TurnHandlingOptions(interruption={"resume_false_interruption": False})
        )
        recorder = WavRecorder()
        session.output.audio = recorder
        await session.start(Agent(instructions="Read aloud."))
        try:
            greeting = session.say(args.text or GREETING)
            await asyncio.wait_for(greeting.wait_for_playout(), 60)
            if not args.text:
                reply = session.say(tokens(REPLY))  # streamed text: one CosyVoice task
                await asyncio.wait_for(reply.wait_for_playout(), 60)
        finally:
            await session.aclose()

    pcm = b"".join(bytes(frame.data) for frame in recorder.frames)
    await asyncio.to_thread(Path(args.to_wav).write_bytes, wav_bytes(pcm, args.sample_rate))
    seconds = sum(frame.duration for frame in recorder.frames)
    print(f"wrote {args.to_wav}: {seconds:.2f} s at {args.sample_rate} Hz")
    for m in tts_metrics:
        print(
            f"  utterance: {m.characters_count} characters, time to first audio {m.ttfb * 1000:.0f} ms,"
            f" {m.audio_duration:.2f} s of audio, connection reused: {m.connection_reused}"
        )
    for item in session.history.items:
        if isinstance(item, llm.ChatMessage) and item.role == "assistant":
            print(f"  transcript: {item.text_content}")


def portaudio_problem() -> str | None:
    """Why LiveKit's console cannot open the microphone and speakers, or None.

    It plays and records through sounddevice, whose Linux wheels do not bundle
    the PortAudio library: without it the console dies in a traceback."""
    try:
        import sounddevice  # noqa: F401
    except OSError as exc:
        return str(exc)
    return None


def build_parser() -> argparse.ArgumentParser:
    """The WAV mode's options; its help also lists LiveKit's commands."""
    parser = argparse.ArgumentParser(
        usage="%(prog)s --to-wav PATH [options]  |  %(prog)s {console,dev,start} [LiveKit's options]",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--to-wav", required=True, metavar="PATH", help="write the agent's speech here")
    parser.add_argument("--text", help="say this instead of the built-in greeting and reply")
    parser.add_argument("--voice", default="longanyang")
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument(
        "--engine", choices=("espeak", "tone"), default="espeak", help="embedded server's engine"
    )
    return parser


def main() -> None:
    argv = sys.argv[1:]
    if "--to-wav" in argv:
        asyncio.run(to_wav(build_parser().parse_args(argv)))
        return
    if not argv or argv[0] in ("-h", "--help"):
        build_parser().print_help()  # LiveKit's own help would not show --to-wav
        return
    if argv[0] == "console" and "--help" not in argv and (problem := portaudio_problem()):
        sys.exit(
            f"console mode needs the PortAudio library for the microphone and speakers ({problem}).\n"
            "Install it (Debian/Ubuntu: sudo apt-get install libportaudio2; macOS: brew install"
            " portaudio), or run without audio devices: python examples/livekit_agent.py --to-wav out.wav"
        )
    cli.run_app(server)  # LiveKit's CLI: console, dev, start, ...


if __name__ == "__main__":
    main()
