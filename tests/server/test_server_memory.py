"""A long-running server stays bounded: task records, and no reference cycles per task."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from server_support import continue_task, open_ws, receive_until, start_task, synthesize, wait_until

from cosyvoice_stream.server import EmbeddedServer, ServerConfig
from cosyvoice_stream.server.session import Connection, TaskRun


async def test_task_records_keep_the_most_recent() -> None:
    async with EmbeddedServer(engine="tone", max_task_records=3) as server, open_ws(server.url) as ws:
        ids = [f"task-{n}" for n in range(5)]
        for task_id in ids:
            got = await synthesize(ws, "One word.", task_id=task_id)
            assert got.finished is not None
        assert [record.task_id for record in server.tasks] == ids[-3:]
        assert all(record.state == "finished" for record in server.tasks)


@pytest.mark.parametrize("value", [0, -1, 2.5, True, "10"])
def test_task_records_bound_is_checked(value: object) -> None:
    with pytest.raises(ValueError, match=r"max_task_records=.* expected an int > 0"):
        ServerConfig(max_task_records=value)  # type: ignore[arg-type]


async def test_a_task_cut_off_mid_audio_leaves_no_reference_cycle(
    alive_without_collector: Callable[[type], int],
) -> None:
    # A task cancelled mid-audio (the client went away) used to stay alive with its
    # connection in a cycle through its producer's CancelledError, until a full
    # collection: at hundreds of streams those passes stalled the server for 100+ ms.
    async with EmbeddedServer(engine="tone", rtf=1.0, text_timeout_s=5.0) as server:
        for _ in range(3):
            async with open_ws(server.url) as ws:
                task_id = await start_task(ws)
                await ws.send(continue_task(task_id, "Several words to keep the producer busy."))
                got = await receive_until(ws, until=("result-generated",))  # sentence-begin
                while not got.frames:  # then audio: the producer is mid-sentence
                    await receive_until(ws, until=("result-generated",), into=got)
            await wait_until(lambda: server.active_connections == 0)
        assert [record.state for record in server.tasks] == ["aborted"] * 3
        await wait_until(lambda: alive_without_collector(Connection) == 0)
        assert alive_without_collector(TaskRun) == 0
