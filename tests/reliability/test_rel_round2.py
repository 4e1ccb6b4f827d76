"""Reliability, round two: the faults of issue 14, each against real sockets.

Scripted servers at the byte level (``RawServer``) play what the embedded
server will not (close frames without the TCP close, masked or oversized
frames, chatter, absurd word times); the embedded server plays the rest.
Every wait is bounded; every scenario ends with nothing leaked.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from reliability_support import (
    RawLink,
    RawServer,
    Resources,
    ScriptedServer,
    drive,
    event,
    ws_close,
    ws_frame,
    ws_text,
)
from word_variants import VARIANTS, WORDS_TEXT, onsets

from cosyvoice_stream import (
    AsyncSynthesizer,
    AudioChunk,
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    ProtocolError,
    ServerError,
    Timeouts,
)
from cosyvoice_stream.server import EmbeddedServer, ServerConfig
from cosyvoice_stream.text import MAX_MESSAGE_CHARACTERS, is_ssml, split_text

KEY = "sk-round2-secret-0123456789abcdef"
#: Deadlines long enough that a prompt failure cannot be mistaken for a timeout.
PATIENT = Timeouts(connect=5.0, start=5.0, first_audio=20.0, idle=20.0, text=20.0, close=0.5)
#: How soon a prompt failure must be known.
PROMPT = 2.0


def started(task_id: str) -> bytes:
    return event(task_id, "task-started")


def result(task_id: str, kind: str | None, index: int | None = 0, words: list | None = None) -> bytes:
    sentence: dict = {"words": words or []}
    if index is not None:
        sentence["index"] = index
    output: dict = {"sentence": sentence}
    if kind is not None:
        output["type"] = kind
    return event(task_id, "result-generated", {"output": output})


async def synth_for(url: str, **kwargs: object) -> AsyncSynthesizer:
    kwargs.setdefault("timeouts", PATIENT)
    kwargs.setdefault("prestart", False)
    return AsyncSynthesizer(url=url, api_key=KEY, **kwargs)  # type: ignore[arg-type]


# -- 1: aclose() ends every reader ---------------------------------------------------------------


async def test_aclose_ends_readers_of_running_and_idle_streams() -> None:
    before = Resources.snapshot()
    async with EmbeddedServer(ServerConfig(engine="tone", rtf=1.0)) as server:
        synth = AsyncSynthesizer(url=server.url, prestart=False)
        first_audio = asyncio.Event()

        async def read_synthesize() -> str:
            try:
                async for item in synth.synthesize("one two three four five six seven eight."):
                    if isinstance(item, AudioChunk):
                        first_audio.set()
            except CosyVoiceError as error:
                return type(error).__name__
            return "end"

        async def read_stream(stream) -> str:  # type: ignore[no-untyped-def]
            try:
                async for _ in stream:
                    pass
            except CosyVoiceError as error:
                return type(error).__name__
            return "end"

        speaking = asyncio.ensure_future(read_synthesize())
        waiting = asyncio.ensure_future(read_stream(synth.stream()))  # no text yet
        flushed = synth.stream()
        flushed.push_text("Hi.")
        flushed.flush()  # between tasks: the reader waits for the next one
        after_flush = asyncio.ensure_future(read_stream(flushed))
        await asyncio.wait_for(first_audio.wait(), 5)
        await asyncio.wait_for(synth.aclose(), PROMPT)
        _, pending = await asyncio.wait({speaking, waiting, after_flush}, timeout=PROMPT)
        for task in pending:
            task.cancel()
        assert not pending, "a reader is still blocked after aclose()"
        assert speaking.result() == "TaskCancelledError"
        assert waiting.result() in ("TaskCancelledError", "end")
        assert after_flush.result() in ("TaskCancelledError", "end")
    await before.assert_released()


# -- 2: a prestarted task never shortens the text window ------------------------------------------

#: The service's text window, scaled down: 2 s instead of 23 s.
WINDOW = 2.0


async def test_prestarted_task_age_does_not_shorten_the_text_window() -> None:
    before = Resources.snapshot()
    config = ServerConfig(engine="tone", text_timeout_s=WINDOW)
    async with EmbeddedServer(config) as server:
        timeouts = Timeouts(connect=2.0, start=2.0, first_audio=2.0, idle=2.0, text=10.0, server_text=WINDOW)
        async with AsyncSynthesizer(url=server.url, timeouts=timeouts, prestart=True) as synth:
            await synth.prewarm()
            assert synth.pool.idle[0].primed is not None
            await asyncio.sleep(WINDOW * 0.6)  # the primed task ages (the scenario, not a sync)
            stream = synth.stream()
            # The caller takes most of a full window to say something: a fresh task
            # would still be waiting; the primed one alone would have timed out.
            await asyncio.sleep(WINDOW * 0.8)
            stream.push_text("Hello there.")
            await stream.finish()
            out = await drive(stream, 5)
    assert out.error is None and not out.timed_out, out.error
    assert out.completes == 1 and len(out.audio) > 0
    await before.assert_released()


# -- 3: the key a server echoes never reaches a message or a log -------------------------------


async def test_key_echoed_in_a_401_body_is_redacted() -> None:
    body = '{"code":"InvalidApiKey","message":"Invalid API-key provided: {key}"}'
    async with RawServer(handshake=401, body=body) as raw:
        synth = await synth_for(raw.url)
        async with synth:
            out = await drive(synth.synthesize("Hi."), 5)
    assert isinstance(out.error, AuthenticationError), repr(out.error)
    assert KEY not in str(out.error) and KEY not in repr(out.error) and "Invalid API-key" in str(out.error)


async def test_key_echoed_in_task_failed_is_redacted_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    echo = f"Invalid API-key provided: {KEY}. " + "x" * 1_000_000
    failed = json.dumps(
        {"header": {"task_id": "TASK_ID", "event": "task-failed", "error_code": "InvalidApiKey",
                    "error_message": echo}, "payload": {}}
    )  # fmt: skip
    caplog.set_level(logging.DEBUG, logger="cosyvoice_stream")
    async with ScriptedServer([failed]) as scripted:
        async with await synth_for(scripted.url) as synth:
            out = await drive(synth.synthesize("Hi."), 5)
    assert isinstance(out.error, AuthenticationError), repr(out.error)
    text = str(out.error)
    assert KEY not in text and KEY not in repr(out.error) and "Invalid API-key" in text
    assert len(text) < 5000, len(text)  # not a 1 MB exception string
    assert KEY not in caplog.text
    assert any("recv" in r.getMessage() for r in caplog.records)  # the DEBUG log was written, redacted


# -- 4: connect is a wall-clock deadline, whatever trickles in ----------------------------------------


async def test_connect_deadline_holds_against_a_trickled_handshake() -> None:
    async with RawServer(lambda link, task_id: None, handshake="trickle") as raw:
        timeouts = Timeouts(connect=1.0, start=5.0, first_audio=5.0, idle=5.0, text=5.0, close=0.5)
        async with await synth_for(raw.url, timeouts=timeouts) as synth:
            started_at = time.monotonic()
            out = await drive(synth.synthesize("Hi."), 10)
    assert isinstance(out.error, ClientTimeoutError), repr(out.error)
    assert time.monotonic() - started_at < 1.0 + PROMPT


async def test_idle_deadline_holds_against_a_trickled_frame() -> None:
    async def script(link: RawLink, task_id: str) -> None:
        await link.send(started(task_id))
        await link.trickle(result(task_id, "sentence-begin"), every=0.2)

    async with RawServer(script) as raw:
        timeouts = Timeouts(connect=2.0, start=2.0, first_audio=1.0, idle=1.0, text=1.0, close=0.5)
        async with await synth_for(raw.url, timeouts=timeouts) as synth:
            out = await drive(synth.synthesize("Hi."), 10)
    assert isinstance(out.error, ClientTimeoutError), repr(out.error)
    assert out.elapsed < 1.0 + PROMPT


# -- 5 and 12: close frames and malformed frames end the task at once -----------------------------


async def test_close_frame_without_tcp_close_ends_the_task_at_once() -> None:
    async def script(link: RawLink, task_id: str) -> None:
        await link.send(started(task_id) + ws_close(1013, "try again later"))  # TCP stays open

    async with RawServer(script) as raw:
        async with await synth_for(raw.url) as synth:
            out = await drive(synth.synthesize("Hi."), 30)
    error = out.error
    assert isinstance(error, ConnectionLostError), repr(error)
    assert out.elapsed < PROMPT
    assert error.close_code == 1013 and error.close_reason == "try again later"  # type: ignore[attr-defined]
    assert "1013" in str(error) and error.retryable


MALFORMED = {
    "masked": ws_frame(0x1, b'{"header":{}}', mask=True),
    "bad-utf8": ws_frame(0x1, b"\xff\xfe not utf-8"),
    "reserved-bits": ws_frame(0x1, b"{}", rsv=0b100),
    "unknown-opcode": ws_frame(0x3, b"?"),
    # A header announcing 32 MiB (over the client's 16 MiB limit); the payload never comes.
    "oversized": b"\x82\x7f" + (32 * 1024 * 1024).to_bytes(8, "big"),
}


@pytest.mark.parametrize("kind", list(MALFORMED))
async def test_malformed_frame_is_a_prompt_protocol_error(kind: str) -> None:
    async def script(link: RawLink, task_id: str) -> None:
        await link.send(started(task_id) + MALFORMED[kind])

    before = Resources.snapshot()
    async with RawServer(script) as raw:
        async with await synth_for(raw.url) as synth:
            out = await drive(synth.synthesize("Hi."), 30)
        assert raw.run_tasks == 1  # not retried on another connection
    assert isinstance(out.error, ProtocolError), repr(out.error)
    assert out.error.retryable is False and out.elapsed < PROMPT and out.audio == b""
    await before.assert_released()


# -- 9: chatter does not keep a dead task alive ----------------------------------------------------


@pytest.mark.parametrize("chatter", ["unknown-event", "other-task"])
async def test_chatter_does_not_rearm_the_deadlines(chatter: str) -> None:
    async def script(link: RawLink, task_id: str) -> None:
        await link.send(started(task_id))
        while True:  # never a word of this task again
            if chatter == "unknown-event":
                await link.send(event(task_id, "task-progress", {"output": {"progress": 0.5}}))
            else:
                await link.send(result("some-other-task", "sentence-begin"))
            await asyncio.sleep(0.1)

    timeouts = Timeouts(connect=2.0, start=2.0, first_audio=1.0, idle=1.0, text=1.0, close=0.5)
    async with RawServer(script) as raw:
        async with await synth_for(raw.url, timeouts=timeouts) as synth:
            out = await drive(synth.synthesize("Hi."), 10)
    assert isinstance(out.error, ClientTimeoutError), repr(out.error)
    assert out.elapsed < 1.0 + PROMPT


# -- 10: audio after another task's event is never this task's -------------------------------------


async def test_audio_after_another_tasks_event_is_a_protocol_error() -> None:
    async def script(link: RawLink, task_id: str) -> None:
        await link.send(started(task_id))
        await link.send(result(task_id, "sentence-begin"))
        await link.send(result("another-task", "sentence-synthesis"))
        await link.send(ws_frame(0x2, b"\x01\x00" * 400))

    async with RawServer(script) as raw:
        async with await synth_for(raw.url) as synth:
            out = await drive(synth.synthesize("Hi."), 10)
    assert isinstance(out.error, ProtocolError), repr(out.error)
    assert out.audio == b"" and out.chunks == 0
    assert out.elapsed < PROMPT


# -- 11: absurd word times ------------------------------------------------------------------------


@pytest.mark.parametrize("begin", ["1" + "0" * 300, "1" + "0" * 400, "1e400", "-5", "900000"])
async def test_absurd_word_times_are_a_protocol_error(begin: str) -> None:
    async def script(link: RawLink, task_id: str) -> None:
        header = {"task_id": task_id, "event": "result-generated"}
        word = f'{{"text":"Hi","begin_index":0,"end_index":2,"begin_time":{begin},"end_time":{begin}}}'
        end = (
            f'{{"header":{json.dumps(header)},"payload":{{"output":{{"type":"sentence-end",'
            f'"sentence":{{"index":0,"words":[{word}]}}}}}}}}'
        )
        await link.send(started(task_id) + result(task_id, "sentence-begin"))
        await link.send(result(task_id, "sentence-synthesis") + ws_frame(0x2, b"\x01\x00" * 2400))
        await link.send(ws_text(end))

    async with RawServer(script) as raw:
        async with await synth_for(raw.url, word_timestamp_enabled=True) as synth:
            words = []

            async def read() -> None:
                async for item in synth.synthesize("Hi."):
                    words.extend(getattr(item, "words", ()))

            with pytest.raises(ProtocolError) as info:
                await asyncio.wait_for(read(), 10)
    assert info.value.retryable is False and "word time" in str(info.value)
    assert all(abs(w.start) < 10 and abs(w.end) < 10 for w in words)


# -- 12: the same fault, the same class, in LiveKit too ----------------------------------------------


async def test_livekit_does_not_retry_a_protocol_error() -> None:
    pytest.importorskip("livekit.plugins.cosyvoice")
    from livekit.agents import APIConnectOptions, APIError
    from livekit.plugins import cosyvoice

    async def script(link: RawLink, task_id: str) -> None:
        await link.send(started(task_id) + MALFORMED["masked"])

    async with RawServer(script) as raw:
        tts = cosyvoice.TTS(base_url=raw.url, api_key=KEY, prestart=False)
        try:

            async def run() -> None:
                options = APIConnectOptions(max_retry=3, retry_interval=0.0, timeout=5.0)
                async with tts.synthesize("Hi.", conn_options=options) as stream:
                    async for _ in stream:
                        pass

            with pytest.raises(APIError) as info:
                await asyncio.wait_for(run(), 10)
        finally:
            await tts.aclose()
        assert raw.run_tasks == 1, "LiveKit retried a protocol error"
    assert info.value.retryable is False


async def test_livekit_aclose_ends_a_synthesize_reader() -> None:
    pytest.importorskip("livekit.plugins.cosyvoice")
    from livekit.agents import APIError
    from livekit.plugins import cosyvoice

    async with EmbeddedServer(ServerConfig(engine="tone", rtf=1.0)) as server:
        tts = cosyvoice.TTS(base_url=server.url, prestart=False)
        first = asyncio.Event()

        async def read() -> str:
            try:
                async with tts.synthesize("one two three four five six seven eight.") as stream:
                    async for _ in stream:
                        first.set()
            except APIError as error:
                return type(error).__name__
            return "end"

        reader = asyncio.ensure_future(read())
        await asyncio.wait_for(first.wait(), 5)
        await asyncio.wait_for(tts.aclose(), PROMPT)
        done, _ = await asyncio.wait({reader}, timeout=PROMPT)
        if not done:
            reader.cancel()
        assert done, "the synthesize() reader is still blocked after TTS.aclose()"


# -- 7: splitting never makes plain text SSML --------------------------------------------------------


async def test_long_plain_text_with_speak_tag_is_spoken_not_ssml(server: EmbeddedServer) -> None:
    filler = "word " * ((MAX_MESSAGE_CHARACTERS - 10) // 5)
    text = filler + "<speak>not a document</speak> and the text goes on " + "more " * 50
    assert not is_ssml(text)
    assert not any(is_ssml(piece) for piece in split_text(text))
    async with AsyncSynthesizer(url=server.url, prestart=False) as synth:
        stream = synth.stream()
        stream.push_text(text)
        await stream.finish()
        out = await drive(stream, 20)
    assert out.error is None and not out.timed_out, repr(out.error)
    assert out.completes == 1 and out.audio


# -- the embedded server forgets old task ids ------------------------------------------------------


async def test_server_bounds_the_ended_task_ids_it_remembers() -> None:
    from websockets.asyncio.client import connect

    from cosyvoice_stream import SynthesisOptions
    from cosyvoice_stream.protocol import TaskProtocol

    tasks = [TaskProtocol(SynthesisOptions(), task_id=f"task-{i}") for i in range(3)]
    async with EmbeddedServer(ServerConfig(engine="tone", max_ended_task_ids=2)) as server:
        async with connect(server.url) as ws:
            for task in tasks:  # three tasks, one after the other, on one connection
                task.start()
                task.send_text("Hi.")
                task.finish()
                while task.active:
                    for message in task.data_to_send():
                        await ws.send(message)
                    received = await asyncio.wait_for(ws.recv(), 5)
                    task.receive_text(received) if isinstance(received, str) else task.receive_bytes(received)
                assert task.error is None, task.error
            # A straggler of the latest ended task is ignored; the oldest id is forgotten:
            # a message for it is one for an unknown task.
            tasks[2]._queue_finish()
            tasks[0]._queue_finish()
            for message in tasks[2].data_to_send() + tasks[0].data_to_send():
                await ws.send(message)
            reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert reply["header"]["event"] == "task-failed" and reply["header"]["task_id"] == "task-0"


# -- 6: word times match the audio in every server variant ---------------------------------------------


@pytest.mark.parametrize(("placement", "origin", "legacy"), VARIANTS)
async def test_word_times_match_the_audio_in_every_variant(placement: str, origin: str, legacy: bool) -> None:
    config = ServerConfig(
        engine="tone", word_timestamps_in=placement, word_time_origin=origin, legacy_events=legacy
    )  # type: ignore[arg-type]
    async with EmbeddedServer(config) as server:
        async with AsyncSynthesizer(url=server.url, word_timestamp_enabled=True, prestart=False) as synth:
            result = await asyncio.wait_for(synth.synthesize_audio(WORDS_TEXT), 10)
    heard = onsets(result.audio, result.sample_rate)
    assert [w.text.strip(".") for w in result.words] == WORDS_TEXT.replace(".", "").split()
    assert len(heard) == len(result.words)
    for word, onset in zip(result.words, heard, strict=True):
        assert abs(word.start - onset) <= 0.03, (word, onset)


# -- 3, through the core's classes: a server error message is bounded too ------------------------------


def test_server_error_message_is_bounded() -> None:
    error = ServerError("x" * 1_000_000)
    assert len(str(error)) < 3000


# -- 3, through both adapters: the echoed key reaches no framework error either -----------------------

ECHO_401 = '{"code":"InvalidApiKey","message":"Invalid API-key provided: {key}"}'


async def test_echoed_key_reaches_no_pipecat_error_frame() -> None:
    pytest.importorskip("pipecat_cosyvoice")
    from pipecat.frames.frames import ErrorFrame, TTSSpeakFrame
    from pipecat.tests.utils import run_test
    from pipecat_cosyvoice import CosyVoiceTTSService

    async with RawServer(handshake=401, body=ECHO_401) as raw:
        tts = CosyVoiceTTSService(url=raw.url, api_key=KEY)
        down, up = await asyncio.wait_for(run_test(tts, frames_to_send=[TTSSpeakFrame("Hi.")]), 20)
    errors = [f for f in [*down, *up] if isinstance(f, ErrorFrame)]
    assert errors, "no ErrorFrame for a refused key"
    for frame in errors:
        shown = f"{frame.error} {frame!r} {frame.exception!r} {frame.exception}"
        assert KEY not in shown and "Invalid API-key" in shown


async def test_echoed_key_reaches_no_livekit_error() -> None:
    pytest.importorskip("livekit.plugins.cosyvoice")
    from livekit.agents import APIConnectOptions, APIError
    from livekit.plugins import cosyvoice

    async with RawServer(handshake=401, body=ECHO_401) as raw:
        tts = cosyvoice.TTS(base_url=raw.url, api_key=KEY, prestart=False)
        try:

            async def run() -> None:
                options = APIConnectOptions(max_retry=0, timeout=5.0)
                async with tts.synthesize("Hi.", conn_options=options) as stream:
                    async for _ in stream:
                        pass

            with pytest.raises(APIError) as info:
                await asyncio.wait_for(run(), 10)
        finally:
            await tts.aclose()
    error = info.value
    shown = f"{error} {error!r} {error.__cause__!r} {error.__cause__}"
    assert KEY not in shown and "Invalid API-key" in shown


async def test_livekit_close_frame_without_tcp_close_fails_at_once() -> None:
    pytest.importorskip("livekit.plugins.cosyvoice")
    from livekit.agents import APIConnectionError, APIConnectOptions
    from livekit.plugins import cosyvoice

    async def script(link: RawLink, task_id: str) -> None:
        await link.send(started(task_id) + ws_close(1013, "try again later"))  # TCP stays open

    async with RawServer(script) as raw:
        tts = cosyvoice.TTS(base_url=raw.url, api_key=KEY, prestart=False)
        began = time.monotonic()
        try:

            async def run() -> None:
                options = APIConnectOptions(max_retry=0, timeout=30.0)
                async with tts.synthesize("Hi.", conn_options=options) as stream:
                    async for _ in stream:
                        pass

            with pytest.raises(APIConnectionError) as info:
                await asyncio.wait_for(run(), 30)
            elapsed = time.monotonic() - began
        finally:
            await tts.aclose()  # bounded by Timeouts.close: this server never answers a close
    # At once: not after the idle deadline, nor after websockets' close timeout (2 s here).
    assert elapsed < 1.0, elapsed
    assert "1013" in str(info.value) or "1013" in str(info.value.__cause__)
