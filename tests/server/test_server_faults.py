"""Every injectable fault, observed from a raw WebSocket client."""

from __future__ import annotations

import itertools
import json
import time

import pytest
from server_support import (
    continue_task,
    finish_task,
    open_ws,
    receive_until,
    run_task,
    start_task,
    synthesize,
)
from websockets.exceptions import InvalidStatus

from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig

TEXT = "One two three four. Five six seven eight."  # 2 s of tone audio: 20 frames


@pytest.mark.parametrize("status", [401, 403, 429, 500])
async def test_handshake_status(server: EmbeddedServer, status: int) -> None:
    server.add_fault(Fault(kind="handshake_status", status=status))
    with pytest.raises(InvalidStatus) as refused:
        async with open_ws(server.url):
            pass
    assert refused.value.response.status_code == status
    assert json.loads(refused.value.response.body)["code"]
    async with open_ws(server.url) as ws:  # consumed: the next handshake works
        assert (await synthesize(ws, "Hi.")).finished is not None
    assert server.connections_opened == 1


async def test_times_repeats_a_fault(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="handshake_status", status=429, times=2))
    for _ in range(2):
        with pytest.raises(InvalidStatus):
            async with open_ws(server.url):
                pass
    assert server.pending_faults == []
    async with open_ws(server.url):
        pass


async def test_fail_task_after_frames(server: EmbeddedServer) -> None:
    server.add_fault(
        Fault(kind="fail_task", code="Throttling.RateQuota", message="slow down", after_frames=3)
    )
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, TEXT)
        await receive_until(ws, until=(), into=got)
    assert len(got.frames) == 3
    failed = got.failed
    assert failed is not None
    assert failed["header"]["error_code"] == "Throttling.RateQuota"
    assert failed["header"]["error_message"] == "slow down"
    assert got.close_code is not None and not got.closed_abruptly
    assert server.tasks[0].state == "failed"


async def test_fail_task_before_started(server: EmbeddedServer) -> None:
    server.add_fault(
        Fault(kind="fail_task", stage="before_started", message="[tts:]Engine return error code: 418")
    )
    async with open_ws(server.url) as ws:
        await ws.send(run_task("t"))
        got = await receive_until(ws)
    assert not got.named("task-started")
    assert got.failed is not None and "418" in got.failed["header"]["error_message"]


async def test_fail_task_fires_at_the_end_of_a_short_task(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="fail_task", after_frames=100))
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "Short.")
    assert len(got.frames) == 3 and got.failed is not None and got.finished is None


async def test_drop_during_audio(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="drop", after_frames=2))
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, TEXT)
    assert len(got.frames) == 2
    assert got.closed_abruptly and got.finished is None and got.failed is None
    assert server.tasks[0].state == "aborted"


async def test_drop_before_started(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="drop", stage="before_started"))
    async with open_ws(server.url) as ws:
        await ws.send(run_task("t"))
        got = await receive_until(ws)
    assert got.closed_abruptly and not got.events


async def test_drop_during_finish(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="drop", stage="during_finish"))
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, TEXT)
    assert len(got.frames) == 20 and got.finished is None and got.closed_abruptly


async def test_stall_during_audio(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="stall", stage="audio", after_frames=2, seconds=0.3))
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, TEXT)
    frame_times = [t for item, t in zip(got.items, got.times, strict=True) if isinstance(item, bytes)]
    gaps = [b - a for a, b in itertools.pairwise(frame_times)]
    # measured at the client: delivery jitter may shave a little off the 0.3 s
    assert gaps[1] >= 0.25 and max(gaps[:1] + gaps[2:]) < 0.25
    assert got.finished is not None


@pytest.mark.parametrize("kind", ["stall", "delay_started"])
async def test_late_task_started(server: EmbeddedServer, kind: str) -> None:
    fault = Fault(kind=kind, stage="before_started", seconds=0.3)  # type: ignore[arg-type]
    server.add_fault(fault)
    async with open_ws(server.url) as ws:
        sent = time.monotonic()
        await start_task(ws)
        assert time.monotonic() - sent >= 0.3


async def test_stall_before_finished(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="stall", stage="before_finished", seconds=0.3))
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "Hi.")
    assert got.times[-1] - got.times[-2] >= 0.25 and got.finished is not None


async def test_garbage_malformed_json(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="garbage", payload="malformed_json", after_frames=1))
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "One two.")
    kinds = ["audio" if isinstance(i, bytes) else i["header"]["event"] for i in got.items]
    bad = kinds.index("<invalid json>")
    assert kinds[:bad].count("audio") == 1
    assert got.finished is not None


async def test_garbage_unknown_event(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="garbage", payload="unknown_event"))
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "One two.")
    assert got.named("task-progress") and got.finished is not None


async def test_garbage_binary_before_started(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="garbage", payload="binary_before_started"))
    async with open_ws(server.url) as ws:
        await ws.send(run_task("t"))
        got = await receive_until(ws, until=("task-started",))
    assert isinstance(got.items[0], bytes) and got.last["header"]["event"] == "task-started"


async def test_garbage_second_task_started(server: EmbeddedServer) -> None:
    server.add_fault(Fault(kind="garbage", payload="second_task_started"))
    async with open_ws(server.url) as ws:
        await ws.send(run_task("t"))
        got = await receive_until(ws, until=("task-started",))
        await receive_until(ws, until=("task-started",), into=got)
        await ws.send(continue_task("t", "Still works."))
        await ws.send(finish_task("t"))
        await receive_until(ws, into=got)
    assert len(got.named("task-started")) == 2 and got.finished is not None


async def test_a_task_takes_one_fault_of_each_kind() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone")) as server:
        server.add_fault(Fault(kind="garbage", payload="unknown_event"))
        server.add_fault(Fault(kind="garbage", payload="second_task_started"))
        server.add_fault(Fault(kind="delay_started", seconds=0.0))
        async with open_ws(server.url) as ws:
            first = await synthesize(ws, "One.")
            assert len(server.pending_faults) == 1
            second = await synthesize(ws, "Two.")
        assert first.named("task-progress") and not second.named("task-progress")
        assert server.pending_faults == []


def test_fault_validation() -> None:
    with pytest.raises(ValueError, match="kind"):
        Fault(kind="explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="stage"):
        Fault(kind="stall", stage="handshake")
    with pytest.raises(ValueError, match="payload"):
        Fault(kind="garbage", payload="nonsense")
    with pytest.raises(ValueError, match="times"):
        Fault(kind="drop", times=0)
    assert Fault(kind="drop").stage == "audio"
    assert Fault(kind="garbage", payload="binary_before_started").stage == "before_started"


async def test_faults_added_before_start_apply() -> None:
    server = EmbeddedServer(engine="tone")
    server.add_fault(Fault(kind="handshake_status", status=500))
    async with server:
        with pytest.raises(InvalidStatus):
            async with open_ws(server.url):
                pass
