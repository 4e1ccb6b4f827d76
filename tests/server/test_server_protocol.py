"""The embedded server against a raw WebSocket client: the protocol message by message."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from server_support import (
    STEP,
    Received,
    continue_task,
    expect_failure,
    finish_task,
    message,
    new_id,
    open_ws,
    receive_until,
    run_task,
    samples,
    start_task,
    synthesize,
    tags,
    wait_until,
)
from websockets.exceptions import InvalidStatus

from cosyvoice_stream.server import SERVICE_PATH, EmbeddedServer, ServerConfig
from cosyvoice_stream.text import billable_characters


def word_ms(n: int, rate: float = 1.0) -> float:
    return n * 250 / rate  # tone defaults: 200 ms word + 50 ms gap


async def test_url_and_any_path(server: EmbeddedServer) -> None:
    assert server.url == f"ws://127.0.0.1:{server.port}{SERVICE_PATH}"
    async with open_ws(f"ws://127.0.0.1:{server.port}/some/other/path") as ws:
        got = await synthesize(ws, "Hi.")
    assert got.finished is not None
    assert server.connections_opened == 1


async def test_event_sequence_pairs_and_usage(server: EmbeddedServer) -> None:
    texts = ["Hello world. 你好", "世界。 Last part"]
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, texts)
    kinds: list[str] = []
    for item in got.items:
        if isinstance(item, bytes):
            kinds.append("audio")
        elif item["header"]["event"] == "result-generated":
            kinds.append(item["payload"]["output"]["type"])
        else:
            kinds.append(item["header"]["event"])
    # Every sentence-synthesis is immediately followed by exactly one binary frame.
    for i, kind in enumerate(kinds):
        if kind == "sentence-synthesis":
            assert kinds[i + 1] == "audio"
        if kind == "audio":
            assert kinds[i - 1] == "sentence-synthesis"
    assert kinds[-1] == "task-finished"
    begins = got.results("sentence-begin")
    ends = got.results("sentence-end")
    assert [e["payload"]["output"]["sentence"]["index"] for e in begins] == [0, 1, 2]
    assert [e["payload"]["output"]["original_text"] for e in ends] == [
        "Hello world.",
        "你好世界。",
        "Last part",
    ]
    usage = [e["payload"]["usage"]["characters"] for e in got.results()]
    assert usage == sorted(usage)
    total = billable_characters("".join(texts))
    assert ends[-1]["payload"]["usage"]["characters"] == total
    finished = got.finished
    assert finished is not None
    assert finished["payload"]["usage"]["characters"] == total
    request_uuid = finished["header"]["attributes"]["request_uuid"]
    uuid.UUID(request_uuid)
    record = server.tasks[0]
    assert record.state == "finished" and record.request_uuid == request_uuid
    assert record.texts == texts and record.characters == total
    assert record.frames_sent == len(got.frames) and record.audio_bytes_sent == len(got.audio)
    assert record.sentences == ["Hello world.", "你好世界。", "Last part"]


async def test_tone_audio_is_exact(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "Hello big world.", sample_rate=16000)
    pcm = samples(got.audio)
    assert len(pcm) == 16000 * word_ms(3) / 1000  # 3 words
    tag = server.tasks[0].tag
    assert set(abs(pcm.astype(int)).tolist()) == {0, tag}
    assert all(len(f) == 2 * 1600 for f in got.frames[:-1])  # chunk_ms=100


async def test_each_task_has_its_own_tag(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        first = await synthesize(ws, "One two.")
        second = await synthesize(ws, "Three four.")  # same connection after task-finished
    t1, t2 = server.tasks
    assert t1.tag != t2.tag and t1.tag == 1000 and t2.tag == 1037
    assert tags(first.audio) == {t1.tag} and tags(second.audio) == {t2.tag}
    assert server.connections_opened == 1


async def test_complete_sentences_are_synthesized_before_finish(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        task_id = await start_task(ws)
        await ws.send(continue_task(task_id, "First sentence! And an unfinished"))
        got = await receive_until(ws, until=("result-generated",))
        while got.last["payload"]["output"].get("type") != "sentence-end":
            await receive_until(ws, until=("result-generated",), into=got)
        assert got.last["payload"]["output"]["original_text"] == "First sentence!"
        await ws.send(continue_task(task_id, " one, continued"))
        await ws.send(finish_task(task_id))
        await receive_until(ws, into=got)
    ends = [e["payload"]["output"]["original_text"] for e in got.results("sentence-end")]
    assert ends == ["First sentence!", "And an unfinished one, continued"]


async def test_decimal_point_is_not_a_sentence_end(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, ["Pi is 3.", "14 today. 价格是3.5元。Next\nline"])
    ends = [e["payload"]["output"]["original_text"] for e in got.results("sentence-end")]
    assert ends == ["Pi is 3.14 today.", "价格是3.5元。", "Next", "line"]


async def test_run_task_on_a_busy_connection_terminates_the_old_task() -> None:
    config = ServerConfig(engine="tone", rtf=1.0, chunk_ms=50)
    async with EmbeddedServer(config) as server, open_ws(server.url) as ws:
        old = await start_task(ws)
        await ws.send(continue_task(old, "This is a long sentence with many many words in it."))
        await ws.send(finish_task(old))
        await receive_until(ws, until=("result-generated",))
        new = new_id()
        await ws.send(run_task(new))
        before = await receive_until(ws, until=("task-started",))
        assert before.last["header"]["task_id"] == new
        await ws.send(continue_task(new, "Short."))
        await ws.send(finish_task(new))
        after = await receive_until(ws)
    old_record, new_record = server.tasks
    assert old_record.state == "aborted" and new_record.state == "finished"
    assert {e["header"]["task_id"] for e in after.events} == {new}
    assert tags(after.audio) == {new_record.tag}
    assert old_record.frames_sent < 20  # 11 words would be 55 frames


@pytest.mark.parametrize("placement", ["sentence-end", "task-finished", "both"])
@pytest.mark.parametrize("origin", ["task", "sentence"])
async def test_word_timestamp_dialects(placement: str, origin: str) -> None:
    config = ServerConfig(engine="tone", word_timestamps_in=placement, word_time_origin=origin)  # type: ignore[arg-type]
    async with EmbeddedServer(config) as server, open_ws(server.url) as ws:
        got = await synthesize(ws, "One two. Three four five.", word_timestamp_enabled=True)
    in_ends = {
        e["payload"]["output"]["sentence"]["index"]: e["payload"]["output"]["sentence"]["words"]
        for e in got.results("sentence-end")
    }
    finished = got.finished
    assert finished is not None
    in_finished = {s["index"]: s["words"] for s in finished["payload"]["output"].get("sentences", [])}
    offset = 500 if origin == "task" else 0
    expected = {
        0: [
            {"text": "One", "begin_index": 0, "end_index": 3, "begin_time": 0, "end_time": 200},
            {"text": "two.", "begin_index": 4, "end_index": 8, "begin_time": 250, "end_time": 450},
        ],
        1: [
            {
                "text": w,
                "begin_index": b,
                "end_index": e,
                "begin_time": offset + t,
                "end_time": offset + t + 200,
            }
            for w, b, e, t in (("Three", 0, 5, 0), ("four", 6, 10, 250), ("five.", 11, 16, 500))
        ],
    }
    if placement in ("sentence-end", "both"):
        assert in_ends == expected
    else:
        assert in_ends == {0: [], 1: []}
    if placement in ("task-finished", "both"):
        assert in_finished == expected
    else:
        assert in_finished == {}
    # Words never ride on sentence-begin / sentence-synthesis events.
    assert all(not e["payload"]["output"]["sentence"]["words"] for e in got.results("sentence-synthesis"))
    del server


async def test_no_words_unless_enabled(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "One two.")
    assert all(not e["payload"]["output"]["sentence"]["words"] for e in got.results())


async def test_legacy_dialect_has_no_type_and_no_index() -> None:
    config = ServerConfig(engine="tone", legacy_events=True)
    async with EmbeddedServer(config) as server, open_ws(server.url) as ws:
        got = await synthesize(ws, "One two. Three.", word_timestamp_enabled=True)
    results = got.results()
    assert results
    for event in results:
        output = event["payload"]["output"]
        assert "type" not in output and "index" not in output["sentence"]
        assert "characters" in event["payload"]["usage"]
    worded = [e for e in results if e["payload"]["output"]["sentence"]["words"]]
    assert [len(e["payload"]["output"]["sentence"]["words"]) for e in worded] == [2, 1]
    assert len(got.frames) == sum(1 for e in results if "original_text" not in e["payload"]["output"])
    del server


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        json.dumps({"header": {"action": "run-task", "task_id": "x"}, "payload": {"input": {}}, "extra": 1}),
        json.dumps(["a", "list"]),
        json.dumps({"payload": {}}),
    ],
)
async def test_malformed_messages_close_1007(server: EmbeddedServer, raw: str) -> None:
    async with open_ws(server.url) as ws:
        await ws.send(raw)
        got = await receive_until(ws, until=())
    assert got.close_code == 1007


async def test_binary_from_client_closes(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        await ws.send(b"\x00\x01")
        got = await receive_until(ws, until=())
    assert got.close_code == 1003


async def test_authentication() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", api_keys=frozenset({"good-key"}))) as server:
        with pytest.raises(InvalidStatus) as missing:
            async with open_ws(server.url):
                pass
        assert missing.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as wrong:
            async with open_ws(server.url, additional_headers={"Authorization": "Bearer bad-key"}):
                pass
        assert wrong.value.response.status_code == 403
        assert b"bad-key" not in wrong.value.response.body
        async with open_ws(server.url, additional_headers={"Authorization": "Bearer good-key"}) as ws:
            got = await synthesize(ws, "Authenticated.")
        assert got.finished is not None
        assert server.connections_opened == 1


async def test_no_authentication_by_default(server: EmbeddedServer) -> None:
    async with open_ws(server.url, additional_headers={"Authorization": "Bearer anything"}) as ws:
        assert (await synthesize(ws, "Fine.")).finished is not None


@pytest.mark.parametrize(
    ("run", "code", "text"),
    [
        (run_task("t", input=False), "InvalidParameter", "task can not be null"),
        (run_task("t", voice="longxiaochun_v2"), "InvalidParameter", "[tts:]Engine return error code: 418"),
        (run_task("t", model="cosyvoice-v2", voice="longanyang"), "InvalidParameter", "error code: 418"),
        (run_task("t", voice=""), "InvalidParameter", "Request voice is invalid!"),
        (
            run_task("t", model="cosyvoice-v2", voice="longxiaochun_v2", instruction="Be happy."),
            "InvalidParameter",
            "error code: 428",
        ),
        (
            run_task("t", voice="longyingjing_v3", instruction="你说话的情感是happy。"),
            "InvalidParameter",
            "error code: 428",
        ),
        (run_task("t", format="flac"), "InvalidParameter", "format"),
        (run_task("t", sample_rate=12345), "InvalidParameter", "sample_rate"),
        (run_task("t", format="opus", sample_rate=22050), "InvalidParameter", "opus"),
        (run_task("t", volume=101), "InvalidParameter", "volume"),
        (run_task("t", volume=True), "InvalidParameter", "volume"),
        (run_task("t", rate=2.5), "InvalidParameter", "rate"),
        (run_task("t", pitch=0.1), "InvalidParameter", "pitch"),
        (run_task("t", seed=70000), "InvalidParameter", "seed"),
        (run_task("t", format="opus", sample_rate=16000, bit_rate=600), "InvalidParameter", "bit_rate"),
        (run_task("t", word_timestamp_enabled="yes"), "InvalidParameter", "word_timestamp_enabled"),
        (run_task("t", language_hints=["xx"]), "InvalidParameter", "language_hints"),
        (run_task("t", model="gpt-4"), "ModelNotFound", "gpt-4"),
    ],
)
async def test_run_task_validation(server: EmbeddedServer, run: str, code: str, text: str) -> None:
    async with open_ws(server.url) as ws:
        got = await expect_failure(ws, run)
    failed = got.failed
    assert failed is not None
    assert failed["header"]["error_code"] == code
    assert text in failed["header"]["error_message"]
    assert failed["header"]["task_id"] == "t"
    assert got.close_code is not None  # the server closes after task-failed
    assert server.tasks[0].state == "failed" and server.tasks[0].error_code == code


async def test_unknown_parameters_are_ignored_and_sdk_defaults_accepted(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await synthesize(
            ws, "Fine.", format="Default", sample_rate=0, type=0, hot_fix={"x": 1}, enable_aigc_tag=True
        )
    assert got.finished is not None
    assert got.frames and server.tasks[0].parameters["hot_fix"] == {"x": 1}


async def test_instruction_on_a_supporting_voice(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "Fine.", voice="longanyang", instruction="Speak happily.")
    assert got.finished is not None


async def test_empty_text_fails(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await expect_failure(ws, run_task("t"), "   ", "\n", finish=True)
    failed = got.failed
    assert failed is not None and failed["header"]["error_message"] == "Please ensure input text is valid."


async def test_punctuation_only_text_finishes_without_audio(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, "...")
    assert got.finished is not None and not got.frames and not got.results()


async def test_text_limits() -> None:
    config = ServerConfig(engine="tone", max_text_characters=20, max_task_characters=30)
    async with EmbeddedServer(config) as server:
        async with open_ws(server.url) as ws:
            got = await expect_failure(ws, run_task("a"), "这是十一个字的句子啊啊")  # 22 billable
        assert got.failed is not None and "20" in got.failed["header"]["error_message"]
        async with open_ws(server.url) as ws:
            got = await expect_failure(ws, run_task("b"), "x" * 20, "y" * 11)
        assert got.failed is not None and "30" in got.failed["header"]["error_message"]
        assert got.failed["header"]["error_code"] == "InvalidParameter"


async def test_text_timeout_after_started_and_after_last_text() -> None:
    config = ServerConfig(engine="tone", text_timeout_s=0.3)
    async with EmbeddedServer(config) as server:
        async with open_ws(server.url) as ws:
            started = time.monotonic()
            await start_task(ws, "a")
            got = await receive_until(ws, until=("task-failed",))
            assert time.monotonic() - started >= 0.3
        failed = got.failed
        assert failed is not None
        assert failed["header"]["error_code"] == "RequestTimeOut"
        assert failed["header"]["error_message"] == "request timeout after 23 seconds"
        async with open_ws(server.url) as ws:
            await start_task(ws, "b")
            await ws.send(continue_task("b", "Some text. And more"))
            got = await receive_until(ws, until=("task-failed",))
            await receive_until(ws, until=(), into=got)
        assert got.results("sentence-end")  # the complete sentence was spoken first
        assert got.failed is not None and got.close_code is not None
        assert [t.state for t in server.tasks] == ["failed", "failed"]


async def test_finish_stops_the_text_timeout() -> None:
    config = ServerConfig(engine="tone", text_timeout_s=0.2, rtf=1.0, chunk_ms=50)
    async with EmbeddedServer(config) as server, open_ws(server.url) as ws:
        got = await synthesize(ws, "Three words here.")  # 0.75 s of paced audio
    assert got.finished is not None
    del server


async def test_idle_timeout_closes_the_connection() -> None:
    config = ServerConfig(engine="tone", idle_timeout_s=0.3)
    async with EmbeddedServer(config) as server:
        started = time.monotonic()  # the server's idle clock starts after this
        async with open_ws(server.url) as ws:
            got = await receive_until(ws, until=())
        assert got.close_code in (1000, 1001) and time.monotonic() - started >= 0.3
        async with open_ws(server.url) as ws:  # the idle clock restarts after a task
            assert (await synthesize(ws, "Hi.")).finished is not None
            after = await receive_until(ws, until=())
        assert after.close_code in (1000, 1001)


async def test_message_size_limit() -> None:
    config = ServerConfig(engine="tone", max_message_bytes=2000)
    async with EmbeddedServer(config) as server, open_ws(server.url) as ws:
        task_id = await start_task(ws)
        await ws.send(continue_task(task_id, "x" * 5000))
        got = await receive_until(ws, until=())
    assert got.close_code == 1009


async def test_unknown_task_id_and_action(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        await ws.send(continue_task("nobody", "text"))
        got = await receive_until(ws, until=("task-failed",))
        await receive_until(ws, until=(), into=got)
    assert got.failed is not None and "nobody" in got.failed["header"]["error_message"]
    async with open_ws(server.url) as ws:
        await ws.send(message("pause-task", "t", input={}))
        got = await receive_until(ws, until=("task-failed",))
    assert got.failed is not None and "pause-task" in got.failed["header"]["error_message"]


async def test_stragglers_of_ended_tasks_are_ignored(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        first = await synthesize(ws, "One.")
        task_id = first.finished["header"]["task_id"] if first.finished else ""
        await ws.send(finish_task(task_id))  # a second finish for a finished task
        second = await synthesize(ws, "Two.")
    assert second.finished is not None and [t.state for t in server.tasks] == ["finished", "finished"]


async def test_first_text_in_run_task_like_older_sdks(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        await ws.send(run_task("old", input={"text": "Sent early."}))
        await ws.send(message("finish-task", "old", input={"text": ""}))
        got = await receive_until(ws)
    assert got.finished is not None and server.tasks[0].texts == ["Sent early."]


async def test_flush_and_cancel_extras(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        task_id = await start_task(ws)
        await ws.send(continue_task(task_id, "No sentence end yet"))
        await ws.send(message("continue-task", task_id, input={"flush": True}))
        got = await receive_until(ws, until=("result-generated",))
        assert got.last["payload"]["output"]["original_text"] == "No sentence end yet"
        await ws.send(message("finish-task", task_id, input={"directive": "cancel"}))
        await receive_until(ws, into=got)
    assert got.finished is not None and server.tasks[0].state == "aborted"


async def test_pcm_sample_rates_are_exact(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        for rate in (8000, 16000, 22050, 24000, 44100, 48000):
            got = await synthesize(ws, "Four words right here.", sample_rate=rate)
            assert len(samples(got.audio)) == round(rate * word_ms(4) / 1000)


async def test_volume_pitch_rate_and_seed(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        loud = await synthesize(ws, "Loud.", volume=100)
        silent = await synthesize(ws, "Quiet.", volume=0)
        fast = await synthesize(ws, "Two words.", rate=2.0)
        seeded = [await synthesize(ws, "Same text.", seed=seed) for seed in (7, 7, 8)]
    assert tags(loud.audio) == {2 * server.tasks[0].tag}
    assert tags(silent.audio) == set() and len(silent.audio) == 2 * 24000 * 250 // 1000
    assert len(samples(fast.audio)) == 24000 * word_ms(2, rate=2.0) / 1000
    a, b, c = (samples(s.audio) for s in seeded)
    assert (abs(a.astype(int)) > 0).tolist() == (abs(c.astype(int)) > 0).tolist()
    assert ((a > 0) == (b > 0)).all() and not ((a > 0) == (c > 0)).all()


async def test_first_packet_delay_and_rtf_pacing() -> None:
    config = ServerConfig(engine="tone", first_packet_delay_ms=200, rtf=0.5, chunk_ms=100)
    async with EmbeddedServer(config) as server, open_ws(server.url) as ws:
        task_id = await start_task(ws)
        sent = time.monotonic()
        await ws.send(continue_task(task_id, "Four words right here."))  # 1 s of audio
        await ws.send(finish_task(task_id))
        got = await receive_until(ws)
    first = got.first_frame_time() - sent
    last = got.times[-1] - sent
    assert 0.2 <= first < 0.2 + 1.0
    assert last >= 0.2 + 0.5 * 0.9  # 10 chunks: the last no earlier than rtf * 0.9 s after the first
    assert len(got.frames) == 10
    del server


async def test_no_pacing_when_rtf_is_zero(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        started = time.monotonic()
        got = await synthesize(ws, " ".join(["word"] * 200) + ".")  # 50 s of audio
        assert time.monotonic() - started < 3.0
    assert len(got.frames) == 500


async def test_many_concurrent_connections(server: EmbeddedServer) -> None:
    async def one(i: int) -> Received:
        async with open_ws(server.url) as ws:
            return await synthesize(ws, f"Stream {i} says hello.", timeout=15)

    results = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(60))), 30)
    by_task = {t.task_id: t for t in server.tasks}
    assert len(by_task) == 60 and server.connections_opened == 60
    for got in results:
        finished = got.finished
        assert finished is not None
        record = by_task[finished["header"]["task_id"]]
        assert tags(got.audio) == {record.tag}
        assert len(got.audio) == record.audio_bytes_sent == 2 * 24000 * 1000 // 1000


async def test_handshake_does_not_block_on_a_busy_engine(espeak_server: EmbeddedServer) -> None:
    async def one() -> Received:
        async with open_ws(espeak_server.url) as ws:
            return await synthesize(ws, "Concurrent speech from espeak.", timeout=STEP * 2)

    results = await asyncio.wait_for(asyncio.gather(*(one() for _ in range(6))), 20)
    assert all(r.finished is not None and r.frames for r in results)


async def test_ssml_task_with_breaks_is_exact(server: EmbeddedServer) -> None:
    doc = '<speak>Hello <break time="500ms"/>world. <sub alias="World Wide Web">WWW</sub> rocks!</speak>'
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, doc, enable_ssml=True, sample_rate=16000, word_timestamp_enabled=True)
    ends = got.results("sentence-end")
    assert [e["payload"]["output"]["original_text"] for e in ends] == ["Hello world.", "WWW rocks!"]
    # 2 words + 500 ms, then 4 words (the alias is spoken)
    assert len(samples(got.audio)) == 16000 * (word_ms(2) + 500 + word_ms(4)) / 1000
    words = [w["text"] for e in ends for w in e["payload"]["output"]["sentence"]["words"]]
    assert words == ["Hello", "world.", "World", "Wide", "Web", "rocks!"]
    finished = got.finished
    assert finished is not None
    assert (
        finished["payload"]["usage"]["characters"]
        == billable_characters(doc)
        == len("Hello world. WWW rocks!")
    )


async def test_plain_text_with_enable_ssml_streams_normally(server: EmbeddedServer) -> None:
    async with open_ws(server.url) as ws:
        got = await synthesize(ws, ["Plain text. ", "More plain text."], enable_ssml=True)
    assert got.finished is not None and len(got.results("sentence-end")) == 2


@pytest.mark.parametrize(
    ("params", "texts", "expected"),
    [
        ({"enable_ssml": True}, ["<speak>One.</speak>", "two"], "Text request limit violated, expected 1."),
        ({}, ["<speak>One.</speak>"], "SSML text is not supported at the moment!"),
        ({"enable_ssml": True}, ["Plain first. ", "<speak>then SSML</speak>"], "SSML text is not supported"),
        ({"enable_ssml": True}, ["<speak>bad <b></speak>"], "mismatched tag"),
        ({"enable_ssml": True}, ['<speak>x<break time="1 hour"/></speak>'], "break"),
    ],
)
async def test_ssml_rules(
    server: EmbeddedServer, params: dict[str, object], texts: list[str], expected: str
) -> None:
    async with open_ws(server.url) as ws:
        got = await expect_failure(ws, run_task("s", **params), *texts)
    failed = got.failed
    assert failed is not None
    assert failed["header"]["error_code"] == "InvalidParameter"
    assert expected in failed["header"]["error_message"]


async def test_missing_codec_fails_the_task_by_name(
    server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cosyvoice_stream.server import encoders

    def no_av() -> object:
        raise encoders.EncoderUnavailableError("mp3 and opus output need PyAV (the 'av' package)")

    monkeypatch.setattr(encoders, "_import_av", no_av)
    async with open_ws(server.url) as ws:
        got = await expect_failure(ws, run_task("m", format="mp3"))
    failed = got.failed
    assert failed is not None and "PyAV" in failed["header"]["error_message"]
    async with open_ws(server.url) as ws:  # pcm and wav need nothing
        assert (await synthesize(ws, "Still fine.", format="wav")).finished is not None


async def test_client_disconnect_mid_task_aborts_it() -> None:
    config = ServerConfig(engine="tone", rtf=1.0, chunk_ms=50)
    async with EmbeddedServer(config) as server:
        async with open_ws(server.url) as ws:
            task_id = await start_task(ws)
            await ws.send(continue_task(task_id, "Many words are spoken here slowly."))
            got = await receive_until(ws, until=("result-generated",))
            assert got.events
        await wait_until(lambda: server.active_connections == 0)
        record = server.tasks[0]
        assert record.state == "aborted" and record.frames_sent < 30
