"""A minimal raw-WebSocket client for testing the embedded server message by message."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

MODEL = "cosyvoice-v3-flash"
VOICE = "longanyang"
STEP = 5.0  # bound of every single wait, seconds


def message(action: str, task_id: str, **payload: Any) -> str:
    header = {"action": action, "task_id": task_id, "streaming": "duplex"}
    return json.dumps({"header": header, "payload": payload})


def run_task(task_id: str, *, model: str = MODEL, input: Any = None, **parameters: Any) -> str:
    params: dict[str, Any] = {"text_type": "PlainText", "voice": VOICE, "format": "pcm", "sample_rate": 24000}
    params.update(parameters)
    payload: dict[str, Any] = {
        "task_group": "audio",
        "task": "tts",
        "function": "SpeechSynthesizer",
        "model": model,
        "parameters": {k: v for k, v in params.items() if v is not None},
    }
    payload["input"] = {} if input is None else input
    if input is False:
        del payload["input"]
    return message("run-task", task_id, **payload)


def continue_task(task_id: str, text: str) -> str:
    return message("continue-task", task_id, input={"text": text})


def finish_task(task_id: str) -> str:
    return message("finish-task", task_id, input={})


def new_id() -> str:
    return uuid.uuid4().hex


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def tags(pcm: bytes) -> set[int]:
    values = np.abs(samples(pcm).astype(np.int32))
    return set(np.unique(values[values > 0]).tolist())


@dataclass
class Received:
    """Everything received for a task, in order."""

    items: list[dict[str, Any] | bytes] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    raw_texts: list[str] = field(default_factory=list)
    close_code: int | None = None
    closed_abruptly: bool = False

    @property
    def events(self) -> list[dict[str, Any]]:
        return [i for i in self.items if isinstance(i, dict)]

    @property
    def frames(self) -> list[bytes]:
        return [i for i in self.items if isinstance(i, bytes)]

    @property
    def audio(self) -> bytes:
        return b"".join(self.frames)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["header"]["event"] == event]

    def results(self, kind: str | None = None) -> list[dict[str, Any]]:
        out = self.named("result-generated")
        if kind is not None:
            out = [e for e in out if e["payload"]["output"].get("type") == kind]
        return out

    @property
    def last(self) -> dict[str, Any]:
        return self.events[-1]

    @property
    def finished(self) -> dict[str, Any] | None:
        found = self.named("task-finished")
        return found[-1] if found else None

    @property
    def failed(self) -> dict[str, Any] | None:
        found = self.named("task-failed")
        return found[-1] if found else None

    def first_frame_time(self) -> float:
        for item, at in zip(self.items, self.times, strict=True):
            if isinstance(item, bytes):
                return at
        raise AssertionError("no audio frame received")


async def receive_until(
    ws: ClientConnection,
    *,
    until: tuple[str, ...] = ("task-finished", "task-failed"),
    timeout: float = STEP,
    into: Received | None = None,
    keep_invalid: bool = True,
) -> Received:
    """Read messages until an event in ``until`` (or the connection closes)."""
    got = into if into is not None else Received()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(f"no {until} within {timeout} s; got {len(got.items)} items")
        try:
            data = await asyncio.wait_for(ws.recv(), remaining)
        except ConnectionClosed as exc:
            got.close_code = exc.rcvd.code if exc.rcvd is not None else None
            got.closed_abruptly = exc.rcvd is None
            return got
        got.times.append(time.monotonic())
        if isinstance(data, bytes):
            got.items.append(data)
            continue
        got.raw_texts.append(data)
        try:
            event = json.loads(data)
        except ValueError:
            if not keep_invalid:
                raise
            got.items.append({"header": {"event": "<invalid json>"}, "payload": {}, "raw": data})
            continue
        got.items.append(event)
        if event["header"].get("event") in until:
            return got


async def start_task(ws: ClientConnection, task_id: str | None = None, **kwargs: Any) -> str:
    task_id = task_id or new_id()
    await ws.send(run_task(task_id, **kwargs))
    got = await receive_until(ws, until=("task-started", "task-failed"))
    assert got.events and got.last["header"]["event"] == "task-started", got.events
    return task_id


async def synthesize(
    ws: ClientConnection, texts: list[str] | str, *, timeout: float = STEP, **kwargs: Any
) -> Received:
    """One whole task: run-task, every text, finish-task; returns what came back after task-started."""
    task_id = await start_task(ws, **kwargs)
    for text in [texts] if isinstance(texts, str) else texts:
        await ws.send(continue_task(task_id, text))
    await ws.send(finish_task(task_id))
    return await receive_until(ws, timeout=timeout)


async def expect_failure(ws: ClientConnection, run: str, *texts: str, finish: bool = False) -> Received:
    """Send run-task (as given) then texts; return what came until task-failed and the close."""
    await ws.send(run)
    task_id = json.loads(run)["header"]["task_id"]
    for text in texts:
        await ws.send(continue_task(task_id, text))
    if finish:
        await ws.send(finish_task(task_id))
    got = await receive_until(ws, until=("task-failed",))
    assert got.failed is not None, got.events
    await receive_until(ws, until=(), into=got)  # then the server closes
    return got


def open_ws(url: str, **kwargs: Any) -> Any:
    return connect(url, open_timeout=STEP, close_timeout=1, max_size=None, **kwargs)


async def wait_until(predicate: Any, timeout: float = STEP) -> None:
    """Poll ``predicate`` (bounded): for server-side effects no message reports."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not reached")
        await asyncio.sleep(0.005)
