"""The floor, checked: a bare WebSocket client that does nothing but the protocol.

Its task is started (run-task -> task-started) before the clock starts, as if
it had been primed, so what it measures is one round trip plus the server's
first-packet time plus whatever the proxy and the server really cost. It also
measures a naive cold start (connect, run-task, wait, text) for reference.
Runs in the project's environment (``websockets``).
"""

from __future__ import annotations

import asyncio
import json
import uuid

from _common import (
    API_KEY,
    COMPLETE_INDEX,
    LLM_CLAUSE_INDEX,
    LLM_TEXT,
    LLM_TOKENS,
    LONG_TEXT,
    MODEL,
    TEXT,
    TOKENS,
    VOICE,
    Handover,
    clock,
    emit,
    ms,
    sleep_until,
    spec,
)
from websockets.asyncio.client import connect


def _msg(action: str, task_id: str, payload: dict) -> str:
    return json.dumps(
        {"header": {"action": action, "task_id": task_id, "streaming": "duplex"}, "payload": payload}
    )


def _run_task(task_id: str, rate: int) -> str:
    return _msg(
        "run-task",
        task_id,
        {
            "task_group": "audio",
            "task": "tts",
            "function": "SpeechSynthesizer",
            "model": MODEL,
            "parameters": {"text_type": "PlainText", "voice": VOICE, "format": "pcm", "sample_rate": rate},
            "input": {},
        },
    )


async def _open(url: str):
    return await connect(
        url,
        additional_headers={"Authorization": f"Bearer {API_KEY}"},
        compression=None,
        proxy=None,
        ping_interval=None,
    )


async def _start(ws, rate: int) -> str:
    task_id = uuid.uuid4().hex
    await ws.send(_run_task(task_id, rate))
    while True:
        msg = await ws.recv()
        if isinstance(msg, str) and json.loads(msg)["header"]["event"] == "task-started":
            return task_id


async def _drain(ws) -> int:
    audio = 0
    while True:
        msg = await ws.recv()
        if isinstance(msg, str):
            event = json.loads(msg)["header"]["event"]
            if event in ("task-finished", "task-failed"):
                return audio
        else:
            audio += len(msg)


async def _audio_bytes(ws, text: str, rate: int) -> int:
    task_id = await _start(ws, rate)
    await ws.send(_msg("continue-task", task_id, {"input": {"text": text}}))
    await ws.send(_msg("finish-task", task_id, {"input": {}}))
    return await _drain(ws)


async def _first_audio(ws) -> float:
    while True:
        msg = await ws.recv()
        if isinstance(msg, bytes):
            return clock()
        if json.loads(msg)["header"]["event"] == "task-failed":
            raise RuntimeError(msg)


async def _whole(ws, task_id: str) -> float:
    t0 = clock()
    await ws.send(_msg("continue-task", task_id, {"input": {"text": TEXT}}))
    await ws.send(_msg("finish-task", task_id, {"input": {}}))
    first = await _first_audio(ws)
    await _drain(ws)
    return first - t0


async def _tokens(ws, task_id: str, period: float) -> float:
    start = clock()
    hand = Handover()
    t0 = 0.0
    first: asyncio.Future = asyncio.ensure_future(_first_audio(ws))
    for i, tok in enumerate(TOKENS):
        due = start + i * period
        await sleep_until(due)
        if i == COMPLETE_INDEX:
            t0 = hand.at(due)
        await ws.send(_msg("continue-task", task_id, {"input": {"text": tok}}))
        hand.done()
    await ws.send(_msg("finish-task", task_id, {"input": {}}))
    t_first = await first
    await _drain(ws)
    return t_first - t0


async def _llm(ws, task_id: str, period: float) -> float:
    """The floor of scenario "llm": tokens as they come, the protocol's flush right after the
    first clause's last token, the clock from the first token."""
    start = clock()
    first: asyncio.Future = asyncio.ensure_future(_first_audio(ws))
    for i, tok in enumerate(LLM_TOKENS):
        await sleep_until(start + i * period)
        await ws.send(_msg("continue-task", task_id, {"input": {"text": tok}}))
        if i == LLM_CLAUSE_INDEX:
            await ws.send(_msg("continue-task", task_id, {"input": {"flush": True}}))
    await ws.send(_msg("finish-task", task_id, {"input": {}}))
    t_first = await first
    await _drain(ws)
    return t_first - start


async def _texts_bytes(ws) -> dict[str, int]:
    """Audio bytes at 24 kHz of every text a scenario waits for, on this server."""
    return {
        "text": await _audio_bytes(ws, TEXT, 24000),
        "long": await _audio_bytes(ws, LONG_TEXT, 24000),
        "llm": await _audio_bytes(ws, LLM_TEXT, 24000),
    }


async def main() -> None:
    s = spec()
    if s.get("scenario") == "bytes":  # audio bytes of the texts at 24 kHz on this server
        ws = await _open(s["url"])
        emit(await _texts_bytes(ws))
        await ws.close()
        return
    if s.get("scenario") == "llm":
        ws = await _open(s["url"])
        out: dict = {}
        for rate in s["token_rates"]:
            out[str(rate)] = []
            for i in range(s["n"] + 1):
                task_id = await _start(ws, 24000)
                await asyncio.sleep(s["gap_s"])
                t = await _llm(ws, task_id, 1.0 / rate)
                if i:
                    out[str(rate)].append(ms(t))
        await ws.close()
        emit(out)
        return
    url, rate, gap = s["url"], s.get("sample_rate", 24000), s["gap_s"]
    period = s.get("token_period_s", 0.05)
    result: dict = {"whole": {"warm": []}, "tokens": {"warm": []}, "cold_naive": []}
    ws = await _open(url)
    for mode in ("whole", "tokens"):
        for i in range(s["n_warm"] + 1):
            task_id = await _start(ws, rate)
            await asyncio.sleep(gap)
            t = await (_whole(ws, task_id) if mode == "whole" else _tokens(ws, task_id, period))
            if i:  # the first one warms the code paths
                result[mode]["warm"].append(ms(t))
    result["bytes"] = await _texts_bytes(ws)
    await ws.close()
    for _ in range(s.get("n_cold", 0)):
        t0 = clock()
        ws = await _open(url)
        task_id = await _start(ws, rate)
        await ws.send(_msg("continue-task", task_id, {"input": {"text": TEXT}}))
        await ws.send(_msg("finish-task", task_id, {"input": {}}))
        first = await _first_audio(ws)
        result["cold_naive"].append(ms(first - t0))
        await ws.close()
        await asyncio.sleep(gap)
    emit(result)


if __name__ == "__main__":
    asyncio.run(main())
