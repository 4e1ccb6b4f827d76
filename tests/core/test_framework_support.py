"""Core pieces both framework adapters use: language table, transcript pieces, error
kinds, keyword checks, per-stream deadlines, connection events, billable usage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from cosyvoice_stream import (
    AsyncSynthesizer,
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    InstructionError,
    InvalidParameterError,
    ServerError,
    SSMLError,
    ThrottlingError,
    Timeouts,
    WordTiming,
    billable_characters,
)
from cosyvoice_stream.failures import describe_failure, error_kind, http_status
from cosyvoice_stream.keywords import accepted_keywords, check_keywords
from cosyvoice_stream.languages import find_language_hint, language_hint, spacing_runs, unspaced
from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig
from cosyvoice_stream.text import is_complete_ssml
from cosyvoice_stream.transcript import TranscriptAligner


@pytest.fixture
async def server() -> AsyncIterator[EmbeddedServer]:
    async with EmbeddedServer(ServerConfig(engine="tone")) as srv:
        yield srv


# -- the language table ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tag", "hint"),
    [("en-US", "en"), ("zh_CN", "zh"), ("zh-Hant-TW", "zh"), ("yue", "zh"), ("cmn", "zh"), ("eng", "en"),
     ("jpn", "ja"), ("KO", "ko"), ("es", None), ("", None), (None, None)],
)  # fmt: skip
def test_one_language_table(tag: object, hint: str | None) -> None:
    assert find_language_hint(tag) == hint
    if hint is None:
        with pytest.raises(InvalidParameterError, match="language"):
            language_hint(tag)
    else:
        assert language_hint(tag) == hint


def test_unspaced_scripts() -> None:
    assert all(unspaced(ch) for ch in "你好。こんにちはカタカナ、！")
    assert not any(unspaced(ch) for ch in "Hello, 안녕 .!")
    words = [WordTiming(t, 0.0, 0.1, 0) for t in ("Hello", "你", "好。", "world", "안녕")]
    runs = [(kind, [w.text for w in run]) for kind, run in spacing_runs(words)]
    assert runs == [(False, ["Hello"]), (True, ["你", "好。"]), (False, ["world", "안녕"])]


# -- transcript pieces ------------------------------------------------------------------------
def test_transcript_pieces_join_back_to_the_text() -> None:
    aligner = TranscriptAligner()
    aligner.add_text("Hello there, how are")
    aligner.add_text(" you? Bye")
    words = [
        WordTiming("Hello", 0.0, 0.2, 0, char_start=0, char_end=5),
        WordTiming("there", 0.25, 0.45, 0, char_start=6, char_end=11),
        WordTiming("you", 0.75, 0.95, 1, char_start=21, char_end=24),
    ]
    pieces = aligner.align(words)
    rest = aligner.rest()
    assert [p.text for p in pieces] == ["Hello ", "there, ", "how are you? "]
    assert [(p.start, p.end) for p in pieces] == [(0.0, 0.2), (0.25, 0.45), (0.75, 0.95)]
    assert rest is not None and rest.text == "Bye" and rest.start is None
    assert "".join(p.text for p in pieces) + rest.text == "Hello there, how are you? Bye"


def test_ssml_transcript_pieces_are_the_spoken_words() -> None:
    aligner = TranscriptAligner(ssml=True)
    aligner.add_text("<speak>Hi 你好</speak>")
    pieces = aligner.align([WordTiming("Hi", 0.0, 0.2, 0), WordTiming("你", 0.25, 0.45, 0)])
    assert [p.text for p in pieces] == ["Hi ", "你"] and aligner.rest() is None


def test_complete_ssml_document() -> None:
    assert is_complete_ssml("<speak>Hi</speak>\n")
    assert not is_complete_ssml("<speak>Hi")
    assert not is_complete_ssml("Hi</speak>")


# -- error kinds, statuses, messages -----------------------------------------------------------
@pytest.mark.parametrize(
    ("error", "kind", "status"),
    [
        (AuthenticationError("bad key", code="HTTP403"), "authentication", 403),
        (AuthenticationError("provider down", retryable=True), "connectivity", 401),
        (InstructionError("428", parameter="instruction"), "invalid_request", 400),
        (SSMLError("twice", parameter="text"), "application", 400),
        (InvalidParameterError("bad", parameter="volume"), "application", 400),
        (ThrottlingError("slow down"), "rate_limit", 429),
        (ConnectionLostError("gone"), "connectivity", None),
        (ClientTimeoutError("late"), "connectivity", None),
        (ServerError("boom"), "server", 500),
    ],
)
def test_error_kinds_and_statuses(error: Exception, kind: str, status: int | None) -> None:
    assert error_kind(error) == kind  # type: ignore[arg-type]
    assert http_status(error) == status  # type: ignore[arg-type]


def test_failure_description() -> None:
    assert (
        describe_failure(ConnectionLostError("gone"), permanent=False) == "CosyVoice connection failed: gone"
    )
    message = describe_failure(InstructionError("no", parameter="instruction"), permanent=True)
    assert message.startswith("CosyVoice task failed:") and "stops speaking" in message


# -- keywords -----------------------------------------------------------------------------------
class _Base:
    def __init__(self, *, name: str | None = None, **kwargs: object) -> None:
        pass


class _Service(_Base):
    def __init__(self, *, word_timestamps: bool = True, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]


def test_keyword_check_names_the_unknown_keyword() -> None:
    accepted = accepted_keywords(_Service)
    assert accepted == {"name", "word_timestamps"}
    check_keywords("Service", ["name"], accepted)
    with pytest.raises(TypeError, match=r"'wrod_timestamps'; did you mean 'word_timestamps'\?"):
        check_keywords("Service", ["wrod_timestamps"], accepted)
    moved = {"speech_rate": "settings=Settings(speech_rate=...)"}
    with pytest.raises(TypeError, match=r"'speach_rate'; did you mean settings=Settings\(speech_rate"):
        check_keywords("Service", ["speach_rate"], accepted, moved)
    with pytest.raises(TypeError, match=r"'zzz'$"):
        check_keywords("Service", ["zzz"], accepted, moved)


# -- per-stream deadlines -----------------------------------------------------------------------
async def test_stream_timeouts_bound_the_wait_for_a_connection() -> None:
    """A listener that never answers the handshake: the stream's connect deadline, not the synthesizer's."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    listener = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        async with AsyncSynthesizer(url=f"ws://127.0.0.1:{port}/ws", prestart=False) as synth:
            started = time.monotonic()
            stream = synth.stream(timeouts=Timeouts(connect=0.3))
            stream.push_text("Hi.")
            await stream.finish()
            with pytest.raises(ClientTimeoutError, match=r"no connection within 0\.3 s"):
                await asyncio.wait_for(anext(stream), 5)
            assert time.monotonic() - started < synth.timeouts.connect  # not the 10 s default
    finally:
        for writer in held:
            writer.transport.abort()
        listener.close()
        await listener.wait_closed()


async def test_stream_timeouts_bound_the_wait_for_the_server(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="stall", stage="before_started", seconds=1.5))
    async with AsyncSynthesizer(url=server.url, prestart=False) as synth:
        events = synth.synthesize("Hi.", timeouts=Timeouts(start=0.3))
        with pytest.raises(ClientTimeoutError, match=r"within 0\.3 s while waiting for the task to start"):
            await asyncio.wait_for(anext(events), 5)
        await events.aclose()
        with pytest.raises(InvalidParameterError, match="timeouts"):
            synth.stream(timeouts=0.3)  # type: ignore[arg-type]


async def test_first_audio_deadline_counts_from_finish(server: EmbeddedServer) -> None:
    """Text that came slowly does not eat into the wait for the first audio."""
    async with AsyncSynthesizer(url=server.url, timeouts=Timeouts(first_audio=0.3)) as synth:
        stream = synth.stream()
        stream.push_text("Slow")
        await asyncio.sleep(0.6)  # the scenario: the next token comes later than first_audio
        stream.push_text(" text.")
        await stream.finish()
        audio = [event.audio async for event in stream]
    assert b"".join(audio)


# -- connection events and background prewarm ---------------------------------------------------
async def test_connection_listener_hears_connect_disconnect_and_failure(server: EmbeddedServer) -> None:
    heard: list[tuple[str, str | None]] = []
    changed = asyncio.Event()

    def listener(event: str, error: Exception | None) -> None:
        heard.append((event, None if error is None else type(error).__name__))
        changed.set()

    async def until(count: int) -> None:
        while len(heard) < count:
            changed.clear()
            await changed.wait()

    synth = AsyncSynthesizer(url=server.url, prestart=False, keep_warm=0)  # no spare: one connection
    synth.add_connection_listener(listener)
    await synth.synthesize_audio("Hi.")
    assert heard == [("connected", None)]
    await synth.aclose()
    await asyncio.wait_for(until(2), 5)
    assert heard[1] == ("disconnected", None)

    server.add_fault(Fault("handshake_status", status=401))
    failing = AsyncSynthesizer(url=server.url, prestart=False, keep_warm=0)
    failing.add_connection_listener(listener)
    with pytest.raises(AuthenticationError):
        await failing.synthesize_audio("Hi.")
    await failing.aclose()
    assert heard[2] == ("connection_error", "AuthenticationError")


async def test_prewarm_soon_reports_permanent_failures(server: EmbeddedServer) -> None:
    server.add_fault(Fault("handshake_status", status=401))
    reported: list[Exception] = []
    done = asyncio.Event()

    async def on_error(error: Exception) -> None:
        reported.append(error)
        done.set()

    synth = AsyncSynthesizer(url=server.url)
    synth.prewarm_soon(on_error=on_error)
    synth.prewarm_soon(on_error=on_error)  # one at a time
    await asyncio.wait_for(done.wait(), 5)
    await synth.aclose()
    assert [type(e) for e in reported] == [AuthenticationError]


def test_prewarm_soon_without_a_loop_does_nothing() -> None:
    AsyncSynthesizer(url="ws://127.0.0.1:9/ws").prewarm_soon()


# -- billable usage -----------------------------------------------------------------------------
async def test_billable_characters_service_figure_or_estimate(server: EmbeddedServer) -> None:
    text = "Hi. 你好。"
    async with AsyncSynthesizer(url=server.url) as synth:
        stream = synth.stream()
        stream.push_text(text)
        assert stream.billable_characters == billable_characters(text)  # the estimate while running
        await stream.finish()
        [event async for event in stream]
        (task,) = [t for t in server.tasks if t.texts]
        assert stream.billable_characters == task.characters  # the service's figure once complete
