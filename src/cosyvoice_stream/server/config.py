"""Configuration of the embedded server and the record it keeps of every task."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

EngineName = Literal["tone", "espeak"]
WordsPlacement = Literal["sentence-end", "task-finished", "task-finished-flat", "both"]
WordTimeOrigin = Literal["task", "sentence"]
TaskState = Literal["started", "finished", "failed", "aborted"]
FlushMode = Literal["honour", "ignore", "reject"]
FLUSH_MODES: tuple[str, ...] = ("honour", "ignore", "reject")

ENGINES: tuple[str, ...] = ("tone", "espeak")
#: ``task-finished``: one ``output.sentences`` entry per sentence; ``task-finished-flat``:
#: every word of the task in one ``output.sentence`` without an index.
WORDS_PLACEMENTS: tuple[str, ...] = ("sentence-end", "task-finished", "task-finished-flat", "both")
WORD_TIME_ORIGINS: tuple[str, ...] = ("task", "sentence")

#: The path of the service; the server accepts any path.
SERVICE_PATH = "/api-ws/v1/inference"


@dataclass(frozen=True)
class ServerConfig:
    """Everything the embedded server can be told.

    ``engine``: ``"tone"`` (deterministic square waves, for exact assertions
    and benchmarks) or ``"espeak"`` (real speech from eSpeak NG).
    ``api_keys``: accepted Bearer keys; empty means no authentication.
    ``first_packet_delay_ms`` / ``rtf``: the timing model (see docs/server.md).
    ``word_timestamps_in`` / ``word_time_origin`` / ``legacy_events``: which
    dialect of the protocol the server plays.
    ``text_timeout_s`` / ``idle_timeout_s``: the service's 23 s and 60 s.
    ``max_ended_task_ids``: how many ended task ids one connection remembers
    (to ignore stragglers of tasks that ended); the oldest are forgotten.
    ``max_task_records``: how many ``TaskRecord`` s ``EmbeddedServer.tasks``
    keeps, the most recent ones: a long-running server must not grow.
    ``flush``: what a flush (continue-task with ``input.flush``) does:
    ``"honour"`` synthesizes the held text as its own unit, ``"ignore"`` drops
    the message (a server without flush), ``"reject"`` fails the task
    (``InvalidParameter``), as a server that refuses the message would.
    """

    engine: EngineName = "tone"
    host: str = "127.0.0.1"
    port: int = 0
    api_keys: frozenset[str] = field(default_factory=frozenset)
    first_packet_delay_ms: float = 0.0
    rtf: float = 0.0
    chunk_ms: int = 100
    word_timestamps_in: WordsPlacement = "sentence-end"
    word_time_origin: WordTimeOrigin = "task"
    legacy_events: bool = False
    text_timeout_s: float = 23.0
    idle_timeout_s: float = 60.0
    max_message_bytes: int = 1_000_000
    tone_word_ms: int = 200
    tone_gap_ms: int = 50
    #: Billable characters allowed in one continue-task message.
    max_text_characters: int = 20_000
    #: Billable characters allowed in one task.
    max_task_characters: int = 200_000
    #: Serve the voice cloning HTTP API (``server.enrollment_url``) next to the WebSocket.
    enrollment: bool = True
    #: Port of the voice cloning HTTP API on ``host`` (0: a free port).
    enrollment_port: int = 0
    max_ended_task_ids: int = 256
    max_task_records: int = 1000
    flush: FlushMode = "honour"

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r} is invalid: expected one of {', '.join(ENGINES)}")
        if self.word_timestamps_in not in WORDS_PLACEMENTS:
            raise ValueError(
                f"word_timestamps_in={self.word_timestamps_in!r} is invalid:"
                f" expected one of {', '.join(WORDS_PLACEMENTS)}"
            )
        if self.word_time_origin not in WORD_TIME_ORIGINS:
            raise ValueError(
                f"word_time_origin={self.word_time_origin!r} is invalid:"
                f" expected one of {', '.join(WORD_TIME_ORIGINS)}"
            )
        if self.flush not in FLUSH_MODES:
            raise ValueError(f"flush={self.flush!r} is invalid: expected one of {', '.join(FLUSH_MODES)}")
        if not isinstance(self.api_keys, frozenset):
            keys: Any = self.api_keys
            if isinstance(keys, str):
                keys = (keys,)
            object.__setattr__(self, "api_keys", frozenset(keys))
        if not all(isinstance(k, str) and k for k in self.api_keys):
            raise ValueError("api_keys must be non-empty strings")
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port!r} is invalid: expected an int in [0, 65535]")
        if (
            isinstance(self.enrollment_port, bool)
            or not isinstance(self.enrollment_port, int)
            or not 0 <= self.enrollment_port <= 65535
        ):
            raise ValueError(
                f"enrollment_port={self.enrollment_port!r} is invalid: expected an int in [0, 65535]"
            )
        _non_negative("first_packet_delay_ms", self.first_packet_delay_ms)
        _non_negative("rtf", self.rtf)
        _positive("chunk_ms", self.chunk_ms)
        _positive("text_timeout_s", self.text_timeout_s)
        _positive("idle_timeout_s", self.idle_timeout_s)
        _positive("max_message_bytes", self.max_message_bytes)
        _positive("tone_word_ms", self.tone_word_ms)
        _non_negative("tone_gap_ms", self.tone_gap_ms)
        _positive("max_text_characters", self.max_text_characters)
        _positive("max_task_characters", self.max_task_characters)
        _positive_int("max_ended_task_ids", self.max_ended_task_ids)
        _positive_int("max_task_records", self.max_task_records)


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r} is invalid: expected a finite number")
    return float(value)


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid: expected an int > 0")


def _non_negative(name: str, value: object) -> None:
    if _number(name, value) < 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a number >= 0")


def _positive(name: str, value: object) -> None:
    if _number(name, value) <= 0:
        raise ValueError(f"{name}={value!r} is invalid: expected a number > 0")


@dataclass
class TaskRecord:
    """What the server saw and did for one task (``EmbeddedServer.tasks``).

    ``tag`` is the amplitude of the tone engine's square wave for this task
    (unique per task on a server), so a test can tell from the samples which
    task a piece of audio came from.
    """

    task_id: str
    parameters: dict[str, Any]
    model: str | None
    tag: int
    connection_id: int
    texts: list[str] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    audio_bytes_sent: int = 0
    frames_sent: int = 0
    state: TaskState = "started"
    request_uuid: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    characters: int = 0
    finish_received: bool = False
    #: Flush messages received (whatever ``ServerConfig.flush`` made of them).
    flushes: int = 0
