"""A real AgentSession speaking through the plugin into a recording audio output.

No LiveKit server and no room: the session's audio output is a small
``io.AudioOutput`` that records frames and reports playback as done at once.
The tone engine tags each task's samples (|sample| == TaskRecord.tag), so
every captured frame can be attributed to the speech it came from.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from livekit import rtc
from livekit.agents import Agent, AgentSession, TurnHandlingOptions, llm, metrics
from livekit.agents.voice import io
from livekit_helpers import LIMIT, spoken_tasks, tags_of, tone_duration

from cosyvoice_stream.server import EmbeddedServer


class RecordingOutput(io.AudioOutput):
    """Keeps every captured frame; playback "finishes" as soon as it is flushed."""

    def __init__(self) -> None:
        super().__init__(label="recording", capabilities=io.AudioOutputCapabilities(pause=False))
        self.frames: list[rtc.AudioFrame] = []
        self.captured = asyncio.Event()
        self._segment = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self._segment:
            self.on_playback_started(created_at=time.time())
        self._segment += frame.duration
        self.frames.append(frame)
        self.captured.set()

    def flush(self) -> None:
        super().flush()
        self._finish(interrupted=False)

    def clear_buffer(self) -> None:
        self._finish(interrupted=True)

    def _finish(self, *, interrupted: bool) -> None:
        if self._segment:
            position, self._segment = self._segment, 0.0
            self.on_playback_finished(playback_position=position, interrupted=interrupted)


@pytest.fixture
async def paced_server(start_server) -> EmbeddedServer:
    # Real-time pacing keeps a speech running long enough to be interrupted.
    return await start_server(rtf=1.0)


@pytest.fixture
async def session(
    paced_server: EmbeddedServer, make_tts
) -> AsyncIterator[tuple[AgentSession, RecordingOutput]]:
    engine = make_tts(base_url=paced_server.url)
    # The recorder cannot pause, so LiveKit's false-interruption resume is off.
    agent_session = AgentSession(
        tts=engine, turn_handling=TurnHandlingOptions(interruption={"resume_false_interruption": False})
    )
    output = RecordingOutput()
    agent_session.output.audio = output
    await asyncio.wait_for(agent_session.start(Agent(instructions="Read aloud.")), LIMIT)
    try:
        yield agent_session, output
    finally:
        await asyncio.wait_for(agent_session.aclose(), LIMIT)


def assistant_messages(agent_session: AgentSession) -> list[llm.ChatMessage]:
    return [
        i for i in agent_session.history.items if isinstance(i, llm.ChatMessage) and i.role == "assistant"
    ]


async def test_say_plays_the_synthesized_speech(paced_server: EmbeddedServer, session) -> None:
    agent_session, output = session
    collected: list[metrics.TTSMetrics] = []
    agent_session.tts.on("metrics_collected", collected.append)  # type: ignore[union-attr]

    handle = agent_session.say("Hello there. 你好。")
    await asyncio.wait_for(handle.wait_for_playout(), LIMIT)

    (task,) = spoken_tasks(paced_server)
    assert tags_of(output.frames) == {task.tag}
    assert {f.sample_rate for f in output.frames} == {24000}
    assert sum(f.duration for f in output.frames) == pytest.approx(tone_duration(4), abs=0.02)
    # The transcript is the plugin's aligned transcript, joined: the text as said.
    (message,) = assistant_messages(agent_session)
    assert message.text_content == "Hello there. 你好。"
    assert not message.interrupted
    (m,) = collected
    assert m.characters_count == len("Hello there. 你好。") and m.ttfb > 0 and m.audio_duration > 0


async def test_interrupt_stops_the_speech_and_no_stale_audio_follows(
    paced_server: EmbeddedServer, session
) -> None:
    agent_session, output = session
    long_text = "one two three four five six seven eight nine ten eleven twelve."
    interrupted = agent_session.say(long_text)
    await asyncio.wait_for(output.captured.wait(), LIMIT)  # mid-speech: audio is flowing

    cut = len(output.frames)
    await asyncio.wait_for(agent_session.interrupt(), LIMIT)
    assert interrupted.interrupted
    after_interrupt = len(output.frames)

    following = agent_session.say("Back again.")
    await asyncio.wait_for(following.wait_for_playout(), LIMIT)

    # Identify the tasks by their text: prestarted tasks are created before their text arrives.
    by_text = {"".join(t.texts): t for t in spoken_tasks(paced_server)}
    first_task, second_task = by_text[long_text], by_text["Back again."]
    assert first_task.state == "aborted"  # the task was cancelled, not played to its end
    assert first_task.audio_bytes_sent < 24000 * 2 * tone_duration(12) / 2
    assert tags_of(output.frames[:cut]) == {first_task.tag}
    # Not one frame of the interrupted speech after the interruption, before or during the next.
    assert after_interrupt == cut
    assert tags_of(output.frames[cut:]) == {second_task.tag}
    assert sum(f.duration for f in output.frames[cut:]) == pytest.approx(tone_duration(2), abs=0.02)
    messages = assistant_messages(agent_session)
    assert messages[0].interrupted and messages[-1].text_content == "Back again."
