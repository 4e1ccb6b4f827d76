"""What a synthesis stream yields: audio chunks, word timings, completion."""

from __future__ import annotations

from dataclasses import dataclass, field

from .timestamps import WordTiming


@dataclass(frozen=True)
class TaskMetrics:
    """Figures of one finished (or failed) task; times in seconds.

    ``time_to_first_audio``: from the first text handed to the stream to the
    first audio byte. ``first_package_delay``: the SDK's figure, from the
    moment the task was requested (connection set-up included) to the first
    audio byte. ``acquire_time``: how long the task waited for its connection
    (0 for a warm one; credentials and handshake for a new one);
    ``connect_time``: the handshake alone. ``billable_characters``: the server's usage when it reported
    one, else the offline estimate by the seed's counting rule.
    """

    task_id: str
    model: str
    voice: str
    request_uuid: str | None = None
    time_to_first_audio: float | None = None
    first_package_delay: float | None = None
    connect_time: float | None = None
    acquire_time: float | None = None
    connection_reused: bool = False
    task_start_time: float | None = None
    audio_duration: float = 0.0
    audio_bytes: int = 0
    estimated_characters: int = 0
    server_characters: int | None = None
    sample_rate: int = 0
    resampled: bool = False

    @property
    def billable_characters(self) -> int:
        return self.server_characters if self.server_characters is not None else self.estimated_characters


@dataclass(frozen=True)
class StreamEvent:
    """Base of stream events: every event has ``audio`` and ``words`` (possibly empty)."""

    audio: bytes = b""
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class AudioChunk(StreamEvent):
    """16-bit mono PCM at ``sample_rate`` (or encoded bytes when the format is not pcm)."""

    sample_rate: int = 0
    task_id: str = ""


@dataclass(frozen=True)
class WordTimestamps(StreamEvent):
    """Newly timed words, in seconds from the start of the task's audio."""

    task_id: str = ""


@dataclass(frozen=True)
class SynthesisComplete(StreamEvent):
    """The task finished; all its audio was delivered before this event."""

    metrics: TaskMetrics = field(default_factory=lambda: TaskMetrics("", "", ""))
