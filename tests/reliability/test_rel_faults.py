"""Faults, end to end through the asyncio client: every one gives a typed error (or a
transparent retry when nothing was delivered yet) within a bounded time, never a hang,
never duplicate or stale audio; afterwards nothing leaks and the pool serves the next
utterance.

Server-side faults come from the embedded server's fault injection; network faults
(refused, cut, silent peer) from ``TcpProxy`` in ``reliability_support``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from reliability_support import Outcome, Resources, TcpProxy, drive, shape, tags_of, until

from cosyvoice_stream import (
    AsyncSynthesizer,
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    InstructionError,
    InvalidParameterError,
    ProtocolError,
    ServerError,
    ServerTimeoutError,
    SSMLError,
    ThrottlingError,
    Timeouts,
    VoiceModelMismatchError,
)
from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig

#: Six tone words of 250 ms: 1.5 s of audio, 15 frames of 100 ms.
TEXT = "one two three four five six."
NEXT = "Next utterance please."
#: Client deadlines small enough to keep stall scenarios short, ample for the tone engine.
FAST = Timeouts(connect=1.0, start=0.5, first_audio=1.0, idle=0.5, text=3.0, close=0.5)


@dataclass(frozen=True)
class Case:
    """One fault scenario and what the caller must see."""

    id: str
    faults: tuple[Fault, ...] = ()
    error: type[CosyVoiceError] | None = None  # None: the fault is tolerated, the audio is complete
    retryable: bool | None = None
    audio: str = "none"  # what may reach the caller before the error: "none" or "prefix"
    bound: float = 2.0  # seconds within which the outcome must be known
    server: dict[str, Any] = field(default_factory=dict)
    code: str | None = None  # the error's code, when it must be the server's


# The task-failed errors of the protocol notes: (id, error_code, error_message, class, retryable).
# fmt: off
TASK_FAILED = [
    ("418", "InvalidParameter", "[tts:]Engine return error code: 418", VoiceModelMismatchError, False),
    ("428", "InvalidParameter", "[tts:]Engine return error code: 428", InstructionError, False),
    ("throttling", "Throttling.RateQuota", "Requests rate limit exceeded, please try again later.", ThrottlingError, True),
    ("timeout23", "RequestTimeOut", "request timeout after 23 seconds", ServerTimeoutError, False),
    ("ssml", "InvalidParameter", "SSML text is not supported at the moment!", SSMLError, False),
    ("invalid-parameter", "InvalidParameter", "Please ensure input text is valid.", InvalidParameterError, False),
    ("invalid-voice", "InvalidParameter", "Request voice is invalid!", InvalidParameterError, False),
    ("internal", "InternalError", "An internal error has occured, please try again later.", ServerError, True),
]
# fmt: on

# fmt: off
CASES: list[Case] = [
    Case("handshake-401", (Fault("handshake_status", status=401),), AuthenticationError, False, code="HTTP401"),
    Case("handshake-403", (Fault("handshake_status", status=403),), AuthenticationError, False, code="HTTP403"),
    Case("handshake-429", (Fault("handshake_status", status=429),), ThrottlingError, True, code="HTTP429"),
    Case("handshake-500", (Fault("handshake_status", status=500),), ServerError, True, code="HTTP500"),
    Case("no-task-started", (Fault("stall", stage="before_started", seconds=0.8),), ClientTimeoutError, True),
    Case("task-started-late", (Fault("delay_started", seconds=0.8),), ClientTimeoutError, True),
]
# fmt: on
for _id, _code, _message, _cls, _retry in TASK_FAILED:
    CASES.append(
        Case(
            f"task-failed-before-audio-{_id}",
            (Fault("fail_task", stage="before_started", code=_code, message=_message),),
            _cls,
            _retry,
            code=_code,
        )
    )
    CASES.append(
        Case(
            f"task-failed-mid-audio-{_id}",
            (Fault("fail_task", stage="audio", after_frames=3, code=_code, message=_message),),
            _cls,
            _retry,
            audio="prefix",
            code=_code,
        )
    )
# fmt: off
CASES += [
    Case("drop-before-audio", (Fault("drop", stage="before_started"),), ConnectionLostError, True),
    Case("drop-mid-audio", (Fault("drop", stage="audio", after_frames=3),), ConnectionLostError, True, "prefix"),
    Case("drop-during-finish", (Fault("drop", stage="during_finish"),), ConnectionLostError, True, "prefix"),
    Case("stall-mid-audio", (Fault("stall", stage="audio", after_frames=3, seconds=0.8),), ClientTimeoutError, True, "prefix"),
    Case("stall-before-finished", (Fault("stall", stage="before_finished", seconds=0.8),), ClientTimeoutError, True, "prefix"),
    Case("malformed-json", (Fault("garbage", payload="malformed_json", after_frames=3),), ProtocolError, None, "prefix"),
    Case("unknown-event", (Fault("garbage", payload="unknown_event", after_frames=3),), None),
    Case("binary-before-task-started", (Fault("garbage", payload="binary_before_started"),), ProtocolError),
    Case("second-task-started", (Fault("garbage", payload="second_task_started"),), ProtocolError),
]
# fmt: on


def spoken(server: EmbeddedServer, text: str, since: int) -> list:
    return [t for t in server.tasks[since:] if "".join(t.texts) == text]


async def reference_shape(server: EmbeddedServer, text: str) -> bytes:
    """The tag-free shape of ``text``'s audio from a clean run (its own synthesizer, closed after)."""
    async with AsyncSynthesizer(url=server.url, timeouts=FAST) as synth:
        out = await drive(synth.synthesize(text), 5)
    assert out.error is None and out.completes == 1
    await until(lambda: server.active_connections == 0, what="the reference connections to close")
    return shape(out.audio)


async def assert_next_utterance_clean(synth: AsyncSynthesizer, server: EmbeddedServer) -> Outcome:
    """The pool serves the next utterance: all its audio, only its own (no stale bytes)."""
    out = await drive(synth.synthesize(NEXT), 5)
    assert out.error is None, f"the next utterance failed: {out.error!r}"
    assert len(out.task_ids) == 1, out.task_ids
    # (the task may have been started before the utterance: a primed spare connection)
    [record] = [t for t in server.tasks if t.task_id == out.task_ids[0]]
    assert record.texts == [NEXT] and record.state == "finished"
    assert len(out.audio) == record.audio_bytes_sent
    assert tags_of(out.audio) == {record.tag}
    return out


def check_delivered(out: Outcome, server: EmbeddedServer, since: int, reference: bytes, case: Case) -> None:
    """No duplicate, reordered or foreign audio: what came is a prefix of one task's audio."""
    records = spoken(server, TEXT, since)
    if out.error is None:  # tolerated fault, or a transparent retry: the whole audio, once
        assert shape(out.audio) == reference
        assert len({*tags_of(out.audio)}) == 1
        assert len(out.audio) in {r.audio_bytes_sent for r in records}
        assert out.completes == 1
        return
    if case.audio == "none":
        assert out.audio == b"", f"{len(out.audio)} audio bytes delivered before {case.id}"
        return
    assert shape(out.audio) == reference[: len(out.audio) // 2], "delivered audio is not a clean prefix"
    if out.audio:
        [tag] = tags_of(out.audio)
        [record] = [r for r in records if r.tag == tag]
        assert len(out.audio) <= record.audio_bytes_sent
    assert out.completes == 0


def check_error(out: Outcome, case: Case) -> None:
    assert not out.timed_out, f"{case.id}: no outcome within {case.bound + 3:g} s (a hang)"
    error = out.error
    if case.error is None:
        assert error is None, f"{case.id} should be tolerated, got {error!r}"
        return
    transparent_retry_ok = case.audio == "none" and case.retryable
    if error is None:
        assert transparent_retry_ok, f"{case.id}: no error, but {case.error.__name__} was expected"
        return
    assert isinstance(error, case.error), f"{case.id}: {type(error).__name__}: {error}"
    if case.retryable is not None:
        assert error.retryable is case.retryable
    assert str(error).strip()
    if case.code is not None:
        assert error.code == case.code and case.code in str(error)
    assert out.elapsed <= case.bound, f"{case.id}: the error took {out.elapsed:.2f} s"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
async def test_server_fault(case: Case) -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", **case.server)) as server:
        reference = await reference_shape(server, TEXT)
        before = Resources.snapshot()
        since = len(server.tasks)
        synth = AsyncSynthesizer(url=server.url, timeouts=FAST)
        for fault in case.faults:
            server.add_fault(fault)
        out = await drive(synth.synthesize(TEXT), case.bound + 3)
        check_error(out, case)
        check_delivered(out, server, since, reference, case)
        assert server.pending_faults == []
        await assert_next_utterance_clean(synth, server)
        await synth.aclose()
        await before.assert_released()


# -- the service's 23 s text timeout and 60 s idle close, made short --------------------------


async def test_text_timeout_fails_the_stream_with_a_typed_error() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", text_timeout_s=0.3)) as server:
        before = Resources.snapshot()
        synth = AsyncSynthesizer(url=server.url, timeouts=FAST, prestart=False)
        stream = synth.stream()
        stream.push_text("Half a sentence and then the text stops")
        started = time.monotonic()
        out = await drive(stream, 3)
        assert isinstance(out.error, ServerTimeoutError), repr(out.error)
        assert "23 seconds" in str(out.error) and not out.error.retryable
        assert 0.25 <= time.monotonic() - started <= 2.0
        assert out.audio == b""
        await stream.aclose()
        await assert_next_utterance_clean(synth, server)
        await synth.aclose()
        await before.assert_released()


async def test_idle_close_of_a_pooled_connection_is_never_handed_out() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", idle_timeout_s=0.3)) as server:
        before = Resources.snapshot()
        synth = AsyncSynthesizer(url=server.url, timeouts=FAST, prestart=False, keep_warm=0)
        await assert_next_utterance_clean(synth, server)
        assert len(synth.pool.idle) == 1
        await until(lambda: server.active_connections == 0, 3, "the server's idle close")
        await assert_next_utterance_clean(synth, server)
        assert server.connections_opened == 2
        await synth.aclose()
        await before.assert_released()


async def test_primed_task_timed_out_on_the_server_is_never_handed_out() -> None:
    """prestart leaves a started task on the pooled connection; the server's text timeout
    fails it and closes the connection. The next utterance must not see that failure."""
    async with EmbeddedServer(ServerConfig(engine="tone", text_timeout_s=0.3)) as server:
        before = Resources.snapshot()
        synth = AsyncSynthesizer(url=server.url, timeouts=FAST, keep_warm=0)
        await assert_next_utterance_clean(synth, server)
        await until(lambda: any(t.state == "failed" for t in server.tasks), 3, "the primed task to time out")
        await until(lambda: server.active_connections == 0, 3, "the server to close the connection")
        await assert_next_utterance_clean(synth, server)
        await synth.aclose()
        await before.assert_released()


# -- network faults through the proxy ----------------------------------------------------------


@pytest.fixture
async def proxied(server: EmbeddedServer):
    async with TcpProxy(server.port) as proxy:
        yield server, proxy


async def test_connection_refused_is_a_quick_retryable_error(proxied) -> None:
    server, proxy = proxied
    before = Resources.snapshot()
    await proxy.refuse()
    synth = AsyncSynthesizer(url=proxy.url(), timeouts=FAST, keep_warm=0)
    out = await drive(synth.synthesize(TEXT), 3)
    assert isinstance(out.error, ConnectionLostError) and out.error.retryable, repr(out.error)
    assert "127.0.0.1" in str(out.error) and out.elapsed < 1.0
    assert out.audio == b"" and server.connections_opened == 0
    await proxy.accept()  # the service is back: the same synthesizer recovers
    await assert_next_utterance_clean(synth, server)
    await synth.aclose()
    await proxy.aclose()
    await before.assert_released()


async def test_silent_peer_during_handshake_hits_the_connect_deadline(proxied) -> None:
    server, proxy = proxied
    before = Resources.snapshot()
    proxy.stall()
    synth = AsyncSynthesizer(url=proxy.url(), timeouts=FAST, keep_warm=0)
    out = await drive(synth.synthesize(TEXT), 4)
    assert isinstance(out.error, ClientTimeoutError) and out.error.retryable, repr(out.error)
    assert 0.9 <= out.elapsed <= 2.0 and out.audio == b""
    proxy.resume()
    await assert_next_utterance_clean(synth, server)
    await synth.aclose()
    await proxy.aclose()
    await before.assert_released()


async def test_network_cut_during_handshake(proxied) -> None:
    server, proxy = proxied
    before = Resources.snapshot()
    proxy.arm(cut_after_down=0)
    synth = AsyncSynthesizer(url=proxy.url(), timeouts=FAST, keep_warm=0)
    out = await drive(synth.synthesize(TEXT), 3)
    assert isinstance(out.error, ConnectionLostError) and out.error.retryable, repr(out.error)
    assert out.elapsed < 1.0 and out.audio == b""
    await assert_next_utterance_clean(synth, server)
    await synth.aclose()
    await proxy.aclose()
    await before.assert_released()


@pytest.mark.parametrize("fault", ["cut", "stall"])
async def test_network_fault_mid_audio(proxied, fault: str) -> None:
    server, proxy = proxied
    reference = await reference_shape(server, TEXT)
    before = Resources.snapshot()
    since = len(server.tasks)
    # Past the handshake and task-started, inside the audio (a frame is 4,800 bytes).
    proxy.arm(**{f"{fault}_after_down": 12_000})
    synth = AsyncSynthesizer(url=proxy.url(), timeouts=FAST, keep_warm=0)
    out = await drive(synth.synthesize(TEXT), 4)
    expected = ConnectionLostError if fault == "cut" else ClientTimeoutError
    assert isinstance(out.error, expected) and out.error.retryable, repr(out.error)
    assert out.elapsed <= 2.0
    case = Case(f"network-{fault}", error=expected, audio="prefix")
    check_delivered(out, server, since, reference, case)
    assert 0 < len(out.audio) < 12_000
    await assert_next_utterance_clean(synth, server)
    await synth.aclose()
    await proxy.aclose()
    await before.assert_released()


async def test_pooled_connection_dead_without_notice_gives_a_bounded_outcome(proxied) -> None:
    """The network goes silent under an idle pooled connection (no FIN, no RST): the next
    utterance either fails with a typed, retryable error within the deadlines or is retried."""
    server, proxy = proxied
    before = Resources.snapshot()
    synth = AsyncSynthesizer(url=proxy.url(), timeouts=FAST, keep_warm=0)
    await assert_next_utterance_clean(synth, server)
    await synth.pool.wait_until(lambda pool: len(pool.idle) == 1, 2)
    proxy.stall()
    out = await drive(synth.synthesize(NEXT), 5)
    assert out.elapsed <= 2.5
    if out.error is not None:
        assert isinstance(out.error, (ClientTimeoutError, ConnectionLostError)) and out.error.retryable
        assert out.audio == b""
    proxy.resume()
    await assert_next_utterance_clean(synth, server)
    await synth.aclose()
    await proxy.aclose()
    await before.assert_released()


@pytest.mark.parametrize("prestart", [False, True], ids=["plain", "primed"])
async def test_pooled_connection_cut_just_before_reuse_is_retried_transparently(proxied, prestart) -> None:
    """The peer is gone (RST) but the client has not read it yet when the pool hands the
    connection out. Nothing was delivered and the error is retryable: the utterance must
    go through on a fresh connection instead of failing."""
    server, proxy = proxied
    before = Resources.snapshot()
    synth = AsyncSynthesizer(url=proxy.url(), timeouts=FAST, keep_warm=0, prestart=prestart)
    await assert_next_utterance_clean(synth, server)
    await synth.pool.wait_until(lambda pool: len(pool.idle) == 1, 2)
    proxy.cut_all()
    out = await drive(synth.synthesize(NEXT), 5)
    assert out.error is None, f"a dead pooled connection was handed out: {out.error!r}"
    await synth.aclose()
    await proxy.aclose()
    await before.assert_released()


# -- credentials from a token provider ------------------------------------------------------


async def test_token_provider_failing_then_recovering(server: EmbeddedServer) -> None:
    before = Resources.snapshot()
    broken = True

    async def provider() -> str:
        if broken:
            raise RuntimeError("token service down for sk-provider-secret-42")
        return "st-good-token"

    synth = AsyncSynthesizer(url=server.url, token_provider=provider, timeouts=FAST, keep_warm=0)
    out = await drive(synth.synthesize(TEXT), 3)
    assert isinstance(out.error, AuthenticationError) and out.error.retryable, repr(out.error)
    assert "token provider" in str(out.error) and "RuntimeError" in str(out.error)
    assert "sk-provider-secret-42" not in str(out.error) and out.error.__cause__ is None
    assert server.connections_opened == 0 and out.elapsed < 1.0
    broken = False
    await assert_next_utterance_clean(synth, server)
    await synth.aclose()
    await before.assert_released()


@pytest.mark.parametrize("token", ["st-bad\r\nX-Injected: 1", "", None, 42, "st-with space"])
async def test_token_provider_returning_a_bad_token_is_refused_before_the_handshake(
    server: EmbeddedServer, token: object
) -> None:
    synth = AsyncSynthesizer(url=server.url, token_provider=lambda: token, timeouts=FAST, keep_warm=0)
    out = await drive(synth.synthesize(TEXT), 3)
    assert isinstance(out.error, InvalidParameterError), repr(out.error)
    assert "token" in str(out.error)
    if isinstance(token, str) and token:
        assert token not in str(out.error)
    assert server.connections_opened == 0
    await synth.aclose()


async def test_token_provider_that_hangs_is_bounded_by_the_connect_deadline(server: EmbeddedServer) -> None:
    never = asyncio.Event()

    async def provider() -> str:
        await never.wait()
        return "st-never"

    timeouts = Timeouts(connect=0.3, start=0.5, first_audio=1.0, idle=0.5)
    synth = AsyncSynthesizer(url=server.url, token_provider=provider, timeouts=timeouts, keep_warm=0)
    try:
        out = await drive(synth.synthesize(TEXT), 1.5)
        assert isinstance(out.error, ClientTimeoutError), repr(out.error)
        assert out.elapsed <= 1.0
    finally:
        await synth.aclose()
