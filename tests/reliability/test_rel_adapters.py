"""Faults through each adapter: the failure surfaces in the framework's own way and the next
utterance works.

* Pipecat: an ``ErrorFrame`` upstream (``pipecat.tests.utils.run_test``), with the category
  of docs/pipecat.md; transient failures end only their own context, permanent ones write the
  service off until a ``TTSUpdateSettingsFrame`` changes something.
* LiveKit: ``APIConnectionError`` / ``APIStatusError`` / ``APITimeoutError`` from
  ``tts.synthesize()`` and ``tts.stream()``; LiveKit's own retry only before any audio.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from reliability_support import Resources, shape, tags_of

from cosyvoice_stream import (
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    ProtocolError,
    ServerError,
    ServerTimeoutError,
    ThrottlingError,
    Timeouts,
    VoiceModelMismatchError,
)
from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig

TEXT = "one two three four five six."
NEXT = "The next utterance."
RATE = 24000  # the server's native rate here: byte counts compare exactly
FAST = Timeouts(connect=1.0, start=0.5, first_audio=1.0, idle=0.5, text=3.0, close=0.5)


@dataclass(frozen=True)
class Fail:
    id: str
    fault: Fault
    core: type[CosyVoiceError]
    audio: bool = False  # whether some audio may come before the failure


FAILURES = [
    Fail("handshake-401", Fault("handshake_status", status=401), AuthenticationError),
    Fail("handshake-403", Fault("handshake_status", status=403), AuthenticationError),
    Fail("handshake-429", Fault("handshake_status", status=429), ThrottlingError),
    Fail("handshake-500", Fault("handshake_status", status=500), ServerError),
    Fail("no-task-started", Fault("stall", stage="before_started", seconds=0.8), ClientTimeoutError),
    Fail(
        "418-before-audio",
        Fault("fail_task", stage="before_started", message="[tts:]Engine return error code: 418"),
        VoiceModelMismatchError,
    ),
    Fail(
        "throttling-mid-audio",
        Fault("fail_task", after_frames=3, code="Throttling.RateQuota", message="rate limit"),
        ThrottlingError,
        True,
    ),
    Fail(
        "timeout23-mid-audio",
        Fault("fail_task", after_frames=3, code="RequestTimeOut", message="request timeout after 23 seconds"),
        ServerTimeoutError,
        True,
    ),
    Fail("drop-before-audio", Fault("drop", stage="before_started"), ConnectionLostError),
    Fail("drop-mid-audio", Fault("drop", after_frames=3), ConnectionLostError, True),
    Fail("drop-during-finish", Fault("drop", stage="during_finish"), ConnectionLostError, True),
    Fail("stall-mid-audio", Fault("stall", after_frames=3, seconds=0.8), ClientTimeoutError, True),
    Fail("malformed-json", Fault("garbage", payload="malformed_json", after_frames=3), ProtocolError, True),
    Fail("second-task-started", Fault("garbage", payload="second_task_started"), ProtocolError),
]


def spoken(server: EmbeddedServer, text: str) -> list[Any]:
    return [t for t in server.tasks if "".join(t.texts).strip() == text]


async def reference(server: EmbeddedServer) -> bytes:
    from cosyvoice_stream import AsyncSynthesizer

    async with AsyncSynthesizer(url=server.url, sample_rate=RATE) as synth:
        result = await asyncio.wait_for(synth.synthesize_audio(TEXT), 5)
    server.tasks.clear()
    return shape(result.audio)


def check_prefix(audio: bytes, server: EmbeddedServer, ref: bytes, fail: Fail) -> None:
    """What came before the failure is a clean prefix of the failed task's own audio."""
    if not fail.audio:
        assert audio == b"", f"{len(audio)} bytes before a failure that allows none"
        return
    assert shape(audio) == ref[: len(audio) // 2]
    records = spoken(server, TEXT)
    assert tags_of(audio) <= {r.tag for r in records} and len(tags_of(audio)) <= 1


# -- Pipecat ------------------------------------------------------------------------------------


def gate(ready: asyncio.Event) -> Any:
    """A processor that lets frames through up to the first ``TTSSpeakFrame``, then holds every
    later downstream frame (in order) until ``ready`` is set: the next utterance starts only
    once the failure was reported, so it can never take the injected fault."""
    from pipecat.frames.frames import EndFrame, ErrorFrame, Frame, SystemFrame, TTSSpeakFrame
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

    class Gate(FrameProcessor):
        def __init__(self) -> None:
            super().__init__(name="gate")
            self._held: asyncio.Queue[Frame] = asyncio.Queue()
            self._gating = False
            self._releaser: asyncio.Task[None] | None = None

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if direction is FrameDirection.UPSTREAM or isinstance(frame, SystemFrame):
                if isinstance(frame, ErrorFrame):
                    ready.set()
                await self.push_frame(frame, direction)
                return
            if self._gating:
                self._held.put_nowait(frame)
                if self._releaser is None:
                    self._releaser = self.create_task(self._release(), name="gate-release")
                return
            self._gating = isinstance(frame, TTSSpeakFrame)
            await self.push_frame(frame, direction)

        async def _release(self) -> None:
            await asyncio.wait_for(ready.wait(), 10)
            while True:
                frame = await self._held.get()
                await self.push_frame(frame)
                if isinstance(frame, EndFrame):
                    return

    return Gate()


@pytest.mark.parametrize("fail", FAILURES, ids=[f.id for f in FAILURES])
async def test_pipecat_error_frame_then_the_next_utterance(fail: Fail) -> None:
    from pipecat.frames.frames import ErrorFrame, TTSAudioRawFrame, TTSSpeakFrame, TTSUpdateSettingsFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test
    from pipecat_cosyvoice import CosyVoiceTTSService

    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        ref = await reference(server)
        before = Resources.snapshot()
        service = CosyVoiceTTSService(url=server.url, prewarm=False, timeouts=FAST)
        server.add_fault(fail.fault)
        permanent = fail.core in (AuthenticationError, VoiceModelMismatchError)
        frames: list[Any] = [TTSSpeakFrame(TEXT)]
        if permanent:  # documented: written off until a settings change
            frames.append(TTSUpdateSettingsFrame(delta=CosyVoiceTTSService.Settings(speech_rate=1.0001)))
        frames.append(TTSSpeakFrame(NEXT))
        down, up = await asyncio.wait_for(
            run_test(
                Pipeline([gate(asyncio.Event()), service]),
                frames_to_send=frames,
                pipeline_params=PipelineParams(audio_out_sample_rate=RATE),
            ),
            20,
        )
        errors = [f for f in up if isinstance(f, ErrorFrame)]
        assert errors, "no ErrorFrame"
        first = errors[0]
        assert isinstance(first.exception, fail.core), (first.error, first.exception)
        assert first.category is not None and first.category.is_permanent is permanent
        assert "CosyVoice" in first.error
        assert service.is_usable
        by_context: dict[str, bytes] = {}
        for frame in down:
            if isinstance(frame, TTSAudioRawFrame):
                by_context[frame.context_id] = by_context.get(frame.context_id, b"") + frame.audio
        [good] = spoken(server, NEXT)
        contexts = list(by_context.values())
        assert contexts and len(contexts[-1]) == good.audio_bytes_sent
        assert tags_of(contexts[-1]) == {good.tag}
        check_prefix(b"".join(contexts[:-1]), server, ref, fail)
        assert server.pending_faults == []
        await before.assert_released()


# -- LiveKit ------------------------------------------------------------------------------------


def livekit_error(fail: Fail) -> tuple[type[Exception], int | None, bool]:
    """The LiveKit exception, status code and retryable flag a core error must become."""
    from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError

    core = fail.core
    if core in (ClientTimeoutError, ServerTimeoutError):
        return APITimeoutError, None, core is ClientTimeoutError
    if core is ConnectionLostError:
        return APIConnectionError, None, True
    if core is ProtocolError:
        return APIError, None, False
    status = {"handshake-401": 401, "handshake-403": 403, "handshake-429": 429, "handshake-500": 500}.get(
        fail.id
    )
    if status is None:
        status = {ThrottlingError: 429, VoiceModelMismatchError: 400, ServerError: 500}[core]
    return APIStatusError, status, core in (ThrottlingError, ServerError)


async def livekit_collect(
    engine: Any, api: str, text: str, conn_options: Any
) -> tuple[bytes, BaseException | None]:
    """Run one utterance through ``synthesize()`` or ``stream()``; its audio and its error."""
    from livekit.agents import APIError

    audio: list[bytes] = []

    async def run() -> None:
        if api == "synthesize":
            async with engine.synthesize(text, conn_options=conn_options) as stream:
                async for event in stream:
                    audio.append(bytes(event.frame.data.cast("B")))
        else:
            async with engine.stream(conn_options=conn_options) as stream:
                for word in text.split(" "):
                    stream.push_text(word + " ")
                stream.end_input()
                async for event in stream:
                    audio.append(bytes(event.frame.data.cast("B")))

    try:
        await asyncio.wait_for(run(), 10)
    except APIError as error:
        return b"".join(audio), error
    return b"".join(audio), None


@pytest.mark.parametrize("api", ["synthesize", "stream"])
@pytest.mark.parametrize("fail", FAILURES, ids=[f.id for f in FAILURES])
async def test_livekit_api_error_then_the_next_utterance(fail: Fail, api: str) -> None:
    from livekit.agents import APIConnectOptions, APIStatusError
    from livekit.plugins import cosyvoice

    no_retry = APIConnectOptions(max_retry=0, timeout=10.0)
    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        ref = await reference(server)
        before = Resources.snapshot()
        engine = cosyvoice.TTS(base_url=server.url, sample_rate=RATE, timeouts=FAST, prestart=False)
        try:
            server.add_fault(fail.fault)
            audio, error = await livekit_collect(engine, api, TEXT, no_retry)
            kind, status, retryable = livekit_error(fail)
            assert type(error) is kind, repr(error)
            assert error.retryable is retryable  # type: ignore[union-attr]
            if status is not None:
                assert isinstance(error, APIStatusError) and error.status_code == status
            check_prefix(audio, server, ref, fail)
            audio, error = await livekit_collect(engine, api, NEXT, no_retry)
            assert error is None, repr(error)
            [good] = spoken(server, NEXT)
            assert len(audio) == good.audio_bytes_sent and tags_of(audio) == {good.tag}
        finally:
            await engine.aclose()
        await before.assert_released()


RETRY_BEFORE_AUDIO = [f for f in FAILURES if not f.audio and livekit_error(f)[2]]


@pytest.mark.parametrize("fail", RETRY_BEFORE_AUDIO, ids=[f.id for f in RETRY_BEFORE_AUDIO])
async def test_livekit_retries_transparently_before_any_audio(fail: Fail) -> None:
    from livekit.agents import APIConnectOptions
    from livekit.plugins import cosyvoice

    retry = APIConnectOptions(max_retry=2, retry_interval=0.0, timeout=10.0)
    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        engine = cosyvoice.TTS(base_url=server.url, sample_rate=RATE, timeouts=FAST, prestart=False)
        try:
            server.add_fault(fail.fault)
            audio, error = await livekit_collect(engine, "synthesize", TEXT, retry)
        finally:
            await engine.aclose()
    assert error is None, repr(error)
    [good] = [t for t in spoken(server, TEXT) if t.state == "finished"]
    assert len(audio) == good.audio_bytes_sent and tags_of(audio) == {good.tag}  # once, not twice


MID_AUDIO = [f for f in FAILURES if f.audio and f.id != "drop-during-finish"]


@pytest.mark.parametrize("fail", MID_AUDIO, ids=[f.id for f in MID_AUDIO])
async def test_livekit_never_retries_after_audio_was_pushed(fail: Fail) -> None:
    """A retry after audio would repeat the start of the utterance: the error must surface."""
    from livekit.agents import APIConnectOptions, APIError
    from livekit.plugins import cosyvoice

    retry = APIConnectOptions(max_retry=2, retry_interval=0.0, timeout=10.0)
    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        ref = await reference(server)
        engine = cosyvoice.TTS(base_url=server.url, sample_rate=RATE, timeouts=FAST, prestart=False)
        try:
            server.add_fault(fail.fault)
            audio, error = await livekit_collect(engine, "stream", TEXT, retry)
        finally:
            await engine.aclose()
        assert isinstance(error, APIError), repr(error)
        assert audio, "the fault was meant to come after some audio"
        check_prefix(audio, server, ref, fail)
        assert len(spoken(server, TEXT)) == 1, "retried after audio had been pushed"
