"""The official SDK's synchronous API, on cosyvoice-stream (no ``dashscope`` package needed).

Three ways the SDK document uses ``SpeechSynthesizer``: a blocking call that
returns the audio, a call that streams through a callback, and bidirectional
streaming of text fragments (as an LLM produces them); then the SDK's object
pool with a flush and an interruption (``streaming_cancel``). Runs against the
embedded server (eSpeak NG) unless DASHSCOPE_API_KEY is set, then against the
cloud. Writes sdk_call.mp3, sdk_callback.mp3, sdk_streaming.wav and
sdk_interrupted.mp3.

    python examples/sdk_style.py [--out-dir .]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cosyvoice_stream.sync as dashscope  # the SDK's module settings: api_key, base_websocket_api_url
from cosyvoice_stream import CosyVoiceError
from cosyvoice_stream.audio import wav_bytes
from cosyvoice_stream.sync import AudioFormat, ResultCallback, SpeechSynthesizer, SpeechSynthesizerObjectPool

MODEL = "cosyvoice-v3-flash"
VOICE = "longanyang"
FRAGMENTS = [
    "The streaming text-to-speech SDK ",
    "can convert input text ",
    "into binary speech data. ",
    "Users hear speech ",
    "while the text is still being written.",
]


@contextlib.contextmanager
def endpoint() -> Iterator[None]:
    """The cloud when DASHSCOPE_API_KEY is set, else a local embedded server."""
    if os.environ.get("DASHSCOPE_API_KEY"):
        yield
        return
    from cosyvoice_stream.server import EmbeddedServer, ServerConfig

    handle = EmbeddedServer(ServerConfig(engine="espeak")).start_in_thread()
    dashscope.base_websocket_api_url = handle.url  # like dashscope.base_websocket_api_url = ...
    try:
        yield
    finally:
        handle.stop()


class FileCallback(ResultCallback):
    """Writes the audio to a file and prints the billable characters (from on_event)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.audio = bytearray()
        self.characters = 0
        self.done = threading.Event()
        self.first_audio = threading.Event()

    def on_open(self) -> None:
        print("  connection established")

    def on_event(self, message: str) -> None:
        usage = json.loads(message)["payload"].get("usage") or {}
        self.characters = usage.get("characters", self.characters)

    def on_data(self, data: bytes) -> None:
        self.audio += data
        self.first_audio.set()

    def on_complete(self) -> None:
        print(f"  complete: {len(self.audio)} bytes, {self.characters} billable characters")

    def on_error(self, message: str) -> None:
        print(f"  failed: {json.loads(message)['header']['error_message']}")

    def on_close(self) -> None:
        self.path.write_bytes(bytes(self.audio))
        self.done.set()


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)

    print("non-streaming call():")
    synthesizer = SpeechSynthesizer(model=MODEL, voice=VOICE)
    audio = synthesizer.call("What is the weather like today?")
    assert audio is not None
    (out_dir / "sdk_call.mp3").write_bytes(audio)
    print(
        f"  request {synthesizer.get_last_request_id()}, "
        f"first packet after {synthesizer.get_first_package_delay():.0f} ms, {len(audio)} bytes"
    )

    print("call() with a callback:")
    callback = FileCallback(out_dir / "sdk_callback.mp3")
    SpeechSynthesizer(model=MODEL, voice=VOICE, callback=callback).call("Streaming through a callback.")
    callback.done.wait(60)  # call() returned at once; the callback thread does the rest

    print("bidirectional streaming:")
    callback = FileCallback(out_dir / "sdk_streaming.pcm")
    synthesizer = SpeechSynthesizer(
        model=MODEL, voice=VOICE, format=AudioFormat.PCM_22050HZ_MONO_16BIT, callback=callback
    )
    for fragment in FRAGMENTS:
        synthesizer.streaming_call(fragment)
    synthesizer.streaming_complete()  # returns once on_complete and on_close ran
    pcm = (out_dir / "sdk_streaming.pcm").read_bytes()
    (out_dir / "sdk_streaming.pcm").unlink()
    (out_dir / "sdk_streaming.wav").write_bytes(wav_bytes(pcm, 22050))
    print(f"  first packet after {synthesizer.get_first_package_delay():.0f} ms")

    print("object pool, flush and interruption:")
    pool = SpeechSynthesizerObjectPool(max_size=1)  # connects now, ahead of the first request
    try:
        callback = FileCallback(out_dir / "sdk_interrupted.mp3")
        synthesizer = pool.borrow_synthesizer(MODEL, VOICE, callback=callback)
        synthesizer.streaming_call("An answer the language model is still writing, and")
        synthesizer.streaming_flush()  # speak what is there now, without ending the task
        callback.first_audio.wait(60)
        synthesizer.streaming_cancel()  # the user interrupted: on_complete and on_close ran, no stale audio
        print("  interrupted after the first audio")
        pool.return_synthesizer(synthesizer)  # its clean connection serves the next borrower
    finally:
        pool.shutdown()

    print("errors are exceptions (no partial audio):")
    try:
        SpeechSynthesizer(model="cosyvoice-v2", voice=VOICE)
    except CosyVoiceError as error:
        print(f"  {type(error).__name__}: {error}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out-dir", type=Path, default=Path("."))
    args = parser.parse_args()
    with endpoint():
        main(args.out_dir)
