"""Injected faults: scripted misbehaviour for testing clients.

A fault is queued with ``EmbeddedServer.add_fault`` and consumed by the next
task (or handshake) it applies to; ``times=N`` makes it apply to N of them.
A task takes at most one fault of each kind, in the order they were added.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["handshake_status", "fail_task", "drop", "stall", "garbage", "delay_started"]
FAULT_KINDS: tuple[str, ...] = (
    "handshake_status",
    "fail_task",
    "drop",
    "stall",
    "garbage",
    "delay_started",
)
GARBAGE_PAYLOADS: tuple[str, ...] = (
    "malformed_json",
    "unknown_event",
    "binary_before_started",
    "second_task_started",
)
_STAGES: dict[str, tuple[str, ...]] = {
    "fail_task": ("audio", "before_started"),
    "drop": ("audio", "before_started", "during_finish"),
    "stall": ("audio", "before_started", "before_finished"),
    "garbage": ("audio", "before_started"),
    "delay_started": ("before_started",),
    "handshake_status": ("handshake",),
}
_DEFAULT_STAGE: dict[str, str] = {
    "fail_task": "audio",
    "drop": "audio",
    "stall": "audio",
    "delay_started": "before_started",
    "handshake_status": "handshake",
}


@dataclass
class Fault:
    """One scripted fault.

    - ``Fault("handshake_status", status=401)``: refuse the next handshake.
    - ``Fault("fail_task", code=..., message=..., after_frames=N)``: task-failed
      (then close) once N audio frames of the task were sent;
      ``stage="before_started"`` fails instead of sending task-started.
    - ``Fault("drop", after_frames=N, stage="audio"|"before_started"|"during_finish")``:
      abort the TCP connection (no close frame) at that point.
    - ``Fault("stall", stage=..., seconds=S)``: send nothing for S seconds at
      that stage (``"audio"``: before audio frame ``after_frames``).
    - ``Fault("garbage", payload=...)``: ``malformed_json`` / ``unknown_event``
      (sent between audio frames, before frame ``after_frames``),
      ``binary_before_started``, ``second_task_started``.
    - ``Fault("delay_started", seconds=S)``: task-started S seconds late.

    When a task ends with fewer audio frames than ``after_frames``, an audio
    stage fault fires before task-finished instead.
    """

    kind: FaultKind
    status: int = 500
    code: str = "InvalidParameter"
    message: str = "injected failure"
    after_frames: int = 0
    stage: str | None = None
    seconds: float = 0.0
    payload: str = "malformed_json"
    times: int = 1

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Fault kind={self.kind!r} is invalid: expected one of {', '.join(FAULT_KINDS)}")
        if self.kind == "garbage":
            if self.payload not in GARBAGE_PAYLOADS:
                raise ValueError(
                    f"garbage payload={self.payload!r} is invalid:"
                    f" expected one of {', '.join(GARBAGE_PAYLOADS)}"
                )
            if self.stage is None:
                self.stage = (
                    "audio" if self.payload in ("malformed_json", "unknown_event") else "before_started"
                )
        elif self.stage is None:
            self.stage = _DEFAULT_STAGE[self.kind]
        if self.stage not in _STAGES[self.kind]:
            raise ValueError(
                f"stage={self.stage!r} is invalid for a {self.kind} fault:"
                f" expected one of {', '.join(_STAGES[self.kind])}"
            )
        if self.kind == "handshake_status" and not 300 <= self.status <= 599:
            raise ValueError(f"status={self.status!r} is invalid: expected an HTTP error status")
        if (
            isinstance(self.after_frames, bool)
            or not isinstance(self.after_frames, int)
            or self.after_frames < 0
        ):
            raise ValueError(f"after_frames={self.after_frames!r} is invalid: expected an int >= 0")
        if self.seconds < 0:
            raise ValueError(f"seconds={self.seconds!r} is invalid: expected >= 0")
        if isinstance(self.times, bool) or not isinstance(self.times, int) or self.times < 1:
            raise ValueError(f"times={self.times!r} is invalid: expected an int >= 1")


@dataclass
class _Entry:
    fault: Fault
    remaining: int


class FaultBook:
    """Pending faults; thread-safe (faults may be added from another thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[_Entry] = []

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending.append(_Entry(fault, fault.times))

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    @property
    def pending(self) -> list[Fault]:
        with self._lock:
            return [entry.fault for entry in self._pending]

    def take_handshake(self) -> Fault | None:
        with self._lock:
            for entry in self._pending:
                if entry.fault.kind == "handshake_status":
                    self._use(entry)
                    return entry.fault
        return None

    def take_for_task(self) -> dict[str, Fault]:
        """At most one pending fault of every task kind, consumed for one task."""
        taken: dict[str, Fault] = {}
        with self._lock:
            for entry in list(self._pending):
                kind = entry.fault.kind
                if kind == "handshake_status" or kind in taken:
                    continue
                taken[kind] = entry.fault
                self._use(entry)
        return taken

    def _use(self, entry: _Entry) -> None:
        entry.remaining -= 1
        if entry.remaining <= 0:
            self._pending.remove(entry)
