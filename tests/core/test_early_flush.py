"""The protocol's flush and the early first clause, against the embedded server."""

from __future__ import annotations

import asyncio
import logging

import pytest

from cosyvoice_stream import AsyncSynthesizer, AudioChunk, SynthesisComplete, WordTimestamps
from cosyvoice_stream.server import EmbeddedServer

LIMIT = 10.0
TOKENS = ["Well", ",", " tomorrow", " in", " Hang", "zhou", ",", " the", " weather", " looks", " sunny", "."]


def spoken(server: EmbeddedServer) -> list:
    return [t for t in server.tasks if t.texts]


async def next_audio(stream) -> AudioChunk:
    async def first() -> AudioChunk:
        async for event in stream:
            if isinstance(event, AudioChunk):
                return event
        raise AssertionError("the stream ended without audio")

    return await asyncio.wait_for(first(), LIMIT)


async def drain(stream) -> tuple[list, list]:
    words, done = [], []

    async def run() -> None:
        async for event in stream:
            if isinstance(event, WordTimestamps):
                words.extend(event.words)
            elif isinstance(event, SynthesisComplete):
                done.append(event)

    await asyncio.wait_for(run(), LIMIT)
    return words, done


async def test_first_clause_audio_arrives_before_the_sentence_is_complete(start_server) -> None:
    server = await start_server()
    async with AsyncSynthesizer(url=server.url) as synth:
        stream = synth.stream()
        for token in TOKENS[:7]:  # "Well, tomorrow in Hangzhou," and no more
            stream.push_text(token)
        chunk = await next_audio(stream)  # the sentence has no end yet: only the flush can do this
        assert chunk.audio
        for token in TOKENS[7:]:
            stream.push_text(token)
        await stream.finish()
        await drain(stream)
    (task,) = spoken(server)
    assert task.flushes == 1
    assert task.sentences == ["Well,", "tomorrow in Hangzhou, the weather looks sunny."]


async def test_without_early_flush_the_first_audio_waits_for_the_sentence(start_server) -> None:
    server = await start_server()
    async with AsyncSynthesizer(url=server.url, early_flush=False) as synth:
        stream = synth.stream()
        for token in TOKENS:
            stream.push_text(token)
        await stream.finish()
        await drain(stream)
    (task,) = spoken(server)
    assert task.flushes == 0 and task.sentences == ["Well, tomorrow in Hangzhou, the weather looks sunny."]


async def test_a_short_first_clause_is_not_flushed_and_a_number_is_not_cut(start_server) -> None:
    server = await start_server()
    async with AsyncSynthesizer(url=server.url) as synth:
        stream = synth.stream()
        for token in ["So", ",", " it", " costs", " 3", ",", "000", " dollars", ",", " roughly", "."]:
            stream.push_text(token)
        await stream.finish()
        await drain(stream)
    (task,) = spoken(server)
    assert task.flushes == 1
    assert task.sentences == ["So, it costs 3,000 dollars,", "roughly."]


async def test_whole_text_and_ssml_are_never_flushed_early(start_server) -> None:
    server = await start_server()
    async with AsyncSynthesizer(url=server.url) as synth:
        await synth.synthesize_audio("Well, tomorrow in Hangzhou, the weather looks sunny.")
        await synth.synthesize_audio("<speak>Well, tomorrow in Hangzhou, it is sunny.</speak>")
        stream = synth.stream(ssml=True)
        stream.push_text("<speak>Well, tomorrow in Hangzhou, it is sunny.</speak>")
        stream.flush()  # nothing to flush in a one-document task
        await stream.finish()
        await drain(stream)
    assert [t.flushes for t in spoken(server)] == [0, 0, 0]


async def test_many_flushes_one_task_one_connection_and_word_times_keep_increasing(start_server) -> None:
    server = await start_server()
    async with AsyncSynthesizer(
        url=server.url, word_timestamp_enabled=True, early_flush=False, keep_warm=0
    ) as synth:
        stream = synth.stream()
        stream.flush()  # nothing pushed yet: nothing is sent
        for i in range(20):
            stream.push_text(f" word{i} more{i}")
            stream.flush()
            stream.flush()  # nothing new since the last flush: nothing is sent
        stream.push_text(" end")
        stream.flush()  # dropped: finish-task right after it synthesizes everything anyway
        await stream.finish()
        words, done = await drain(stream)
    (task,) = spoken(server)
    assert task.flushes == 20 and len(task.sentences) == 21
    assert server.connections_opened == 1 and len(server.tasks) <= 2  # + the next task primed
    assert len(done) == 1
    assert len(words) == 41
    starts = [w.start for w in words]
    assert starts == sorted(starts) and len(set(starts)) == 41
    assert all(w.end >= w.start for w in words)
    assert words[-1].char_start == len("".join(f" word{i} more{i}" for i in range(20))) + 1


async def test_flush_before_task_started_is_held_and_sent_in_order(start_server) -> None:
    server = await start_server()
    async with AsyncSynthesizer(url=server.url, prestart=False, keep_warm=0, early_flush=False) as synth:
        stream = synth.stream()
        stream.push_text("No end here")  # pushed before the connection exists
        stream.flush()
        audio = await next_audio(stream)
        assert audio.audio
        await stream.finish()
        await drain(stream)
    (task,) = spoken(server)
    assert task.flushes == 1 and task.sentences == ["No end here"]


async def test_a_server_that_ignores_flush_speaks_as_before(start_server) -> None:
    server = await start_server(flush="ignore")
    async with AsyncSynthesizer(url=server.url) as synth:
        stream = synth.stream()
        for token in TOKENS:
            stream.push_text(token)
        await stream.finish()
        await drain(stream)
        assert synth.flush_supported
    (task,) = spoken(server)
    assert task.flushes == 1 and task.state == "finished"
    assert task.sentences == ["Well, tomorrow in Hangzhou, the weather looks sunny."]


async def test_a_server_that_rejects_flush_still_speaks_the_utterance(
    start_server, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_server(flush="reject")
    caplog.set_level(logging.WARNING, logger="cosyvoice_stream")
    async with AsyncSynthesizer(url=server.url, word_timestamp_enabled=True) as synth:
        for _ in range(2):
            stream = synth.stream()
            for token in TOKENS:
                stream.push_text(token)
            await stream.finish()
            words, done = await drain(stream)  # no error reaches the caller
            assert len(done) == 1 and [w.text for w in words][:2] == ["Well,", "tomorrow"]
        assert not synth.flush_supported
    tasks = spoken(server)
    # The first task failed on the flush; the retry and the second utterance sent none.
    assert [t.state for t in tasks] == ["failed", "finished", "finished"]
    assert [t.flushes for t in tasks] == [1, 0, 0]
    assert "".join(tasks[1].texts) == "".join(TOKENS)
    warnings = [r for r in caplog.records if "flush" in r.getMessage()]
    assert len(warnings) == 1


async def test_a_rejected_explicit_flush_turns_later_flushes_into_no_ops(start_server) -> None:
    server = await start_server(flush="reject")
    async with AsyncSynthesizer(url=server.url, early_flush=False) as synth:
        stream = synth.stream()
        stream.push_text("First part")
        stream.flush()
        stream.push_text(" and the rest.")
        await stream.finish()
        await drain(stream)
        stream = synth.stream()
        stream.push_text("Again")
        stream.flush()
        await stream.finish()
        await drain(stream)
    assert [(t.state, t.flushes) for t in spoken(server)] == [("failed", 1), ("finished", 0), ("finished", 0)]


def test_flush_message_is_the_sdks_and_a_flush_right_before_finish_is_dropped() -> None:
    import json

    from cosyvoice_stream.options import SynthesisOptions
    from cosyvoice_stream.protocol import TaskProtocol

    protocol = TaskProtocol(SynthesisOptions(model="cosyvoice-v3-flash", voice="longanyang"))
    protocol.start()
    protocol.send_text("Hello")
    protocol.flush()  # held until task-started, in order
    assert [json.loads(m)["header"]["action"] for m in protocol.data_to_send()] == ["run-task"]
    protocol.receive_text(json.dumps({"header": {"task_id": protocol.task_id, "event": "task-started"}}))
    text, flush = (json.loads(m) for m in protocol.data_to_send())
    assert text["payload"] == {"input": {"text": "Hello"}}
    assert flush["header"] == {"action": "continue-task", "task_id": protocol.task_id, "streaming": "duplex"}
    assert flush["payload"] == {
        "model": "cosyvoice-v3-flash",
        "task_group": "audio",
        "task": "tts",
        "function": "SpeechSynthesizer",
        "input": {"flush": True},
    }
    protocol.send_text(" world")
    protocol.flush()
    protocol.finish()
    sent = [json.loads(m) for m in protocol.data_to_send()]
    assert [m["header"]["action"] for m in sent] == ["continue-task", "finish-task"]
    assert sent[0]["payload"]["input"] == {"text": " world"}


def test_the_stream_module_does_not_import_the_synthesizer_module() -> None:
    """aio/stream.py <-> aio/synthesizer.py: the cycle is broken (StreamHost protocol)."""
    import ast
    from pathlib import Path

    import cosyvoice_stream.aio.stream as stream_module

    tree = ast.parse(Path(stream_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "synthesizer" not in imported and "cosyvoice_stream.aio.synthesizer" not in imported


async def test_a_failure_after_the_server_answered_the_flush_is_not_taken_for_a_rejection(
    start_server,
) -> None:
    from cosyvoice_stream import InvalidParameterError
    from cosyvoice_stream.server import Fault

    server = await start_server()
    server.add_fault(
        Fault("fail_task", stage="audio", after_frames=1, message="Please ensure input text is valid.")
    )
    async with AsyncSynthesizer(url=server.url) as synth:
        stream = synth.stream()
        for token in TOKENS:
            stream.push_text(token)
        await stream.finish()
        with pytest.raises(InvalidParameterError):
            await drain(stream)
        assert synth.flush_supported  # audio came after the flush: it was not the flush
    assert [t.state for t in spoken(server)] == ["failed"]


async def test_a_fragment_is_never_split_into_a_piece_that_looks_like_ssml(start_server) -> None:
    server = await start_server()
    async with AsyncSynthesizer(url=server.url) as synth:
        stream = synth.stream()
        stream.push_text("Well, <speak>is a word here")
        await stream.finish()
        await drain(stream)
    (task,) = spoken(server)
    assert task.texts == ["Well, <speak>is a word here"] and task.state == "finished"
