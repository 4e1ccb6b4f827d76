import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cosyvoice_stream.errors import (
    CosyVoiceError,
    InstructionError,
    ProtocolError,
    ServerTimeoutError,
    SSMLError,
    TextLimitError,
    ThrottlingError,
    VoiceModelMismatchError,
)
from cosyvoice_stream.options import SynthesisOptions
from cosyvoice_stream.protocol import (
    AudioReceived,
    SentenceBegin,
    SentenceEnd,
    TaskFailed,
    TaskFinished,
    TaskProtocol,
    TaskStarted,
    TaskState,
    UsageUpdated,
    WordsReceived,
    error_from_task_failed,
)


def event(task_id: str, name: str, payload: dict | None = None, **header: object) -> str:
    return json.dumps({"header": {"task_id": task_id, "event": name, **header}, "payload": payload or {}})


def started(options: SynthesisOptions | None = None, **kwargs: object) -> TaskProtocol:
    proto = TaskProtocol(options or SynthesisOptions(word_timestamp_enabled=True), **kwargs)
    proto.start()
    proto.receive_text(event(proto.task_id, "task-started"))
    return proto


def test_run_task_carries_every_parameter_with_wire_names() -> None:
    options = SynthesisOptions(
        model="cosyvoice-v3-plus",
        voice="longanyang",
        format="opus",
        sample_rate=48000,
        volume=70,
        speech_rate=1.5,
        pitch_rate=0.8,
        bit_rate=64,
        word_timestamp_enabled=True,
        seed=42,
        language_hints=["en"],
        instruction="你说话的情感是happy。",
        enable_aigc_tag=True,
        aigc_propagator="me",
        aigc_propagate_id="p1",
        additional_params={"volume": 60, "extra": 1},
    )
    proto = TaskProtocol(options)
    proto.start()
    [msg] = proto.data_to_send()
    run = json.loads(msg)
    assert run["header"] == {"action": "run-task", "task_id": proto.task_id, "streaming": "duplex"}
    payload = run["payload"]
    assert payload["input"] == {}
    assert payload["model"] == "cosyvoice-v3-plus"
    assert payload["task_group"] == "audio" and payload["task"] == "tts"
    assert payload["function"] == "SpeechSynthesizer"
    assert payload["parameters"] == {
        "text_type": "PlainText",
        "voice": "longanyang",
        "format": "opus",
        "sample_rate": 48000,
        "volume": 60,
        "rate": 1.5,
        "pitch": 0.8,
        "seed": 42,
        "bit_rate": 64,
        "word_timestamp_enabled": True,
        "language_hints": ["en"],
        "instruction": "你说话的情感是happy。",
        "enable_aigc_tag": True,
        "aigc_propagator": "me",
        "aigc_propagate_id": "p1",
        "extra": 1,
    }


def test_text_before_task_started_is_held_then_released_in_order() -> None:
    proto = TaskProtocol(SynthesisOptions())
    proto.start()
    proto.data_to_send()
    proto.send_text("Hello ")
    proto.send_text("world.")
    proto.finish()
    assert proto.data_to_send() == []
    assert proto.receive_text(event(proto.task_id, "task-started")) == [TaskStarted(proto.task_id)]
    sent = [json.loads(m) for m in proto.data_to_send()]
    assert [m["header"]["action"] for m in sent] == ["continue-task", "continue-task", "finish-task"]
    assert [m["payload"]["input"].get("text") for m in sent] == ["Hello ", "world.", None]
    assert proto.state is TaskState.FINISHING


def test_long_fragment_split_into_messages_under_the_limit() -> None:
    proto = started()
    proto.data_to_send()
    proto.send_text("Sentence number one. " * 200)
    messages = [json.loads(m)["payload"]["input"]["text"] for m in proto.data_to_send()]
    assert len(messages) == 3
    assert "".join(messages) == "Sentence number one. " * 200
    assert all(len(m) <= 2000 for m in messages)


def test_task_limit_and_ssml_rules() -> None:
    proto = started()
    with pytest.raises(SSMLError, match="not allowed on streaming input"):
        proto.send_text("<speak>hi</speak>")
    proto.send_text("a" * 199_000)
    with pytest.raises(TextLimitError, match="at most 200000"):
        proto.send_text("你" * 600)
    ssml = started(ssml=True)
    with pytest.raises(SSMLError, match="not well-formed"):
        ssml.send_text("<speak>hi</spek>")
    ssml.send_text("<speak>hi<break time='1s'/></speak>")
    with pytest.raises(SSMLError, match="exactly one"):
        ssml.send_text("more")


def test_full_task_sentence_end_dialect() -> None:
    proto = started()
    t = proto.task_id
    words = [{"text": "Hi", "begin_index": 0, "end_index": 2, "begin_time": 80, "end_time": 200}]
    out = proto.receive_text(
        event(
            t,
            "result-generated",
            {
                "output": {
                    "type": "sentence-begin",
                    "sentence": {"index": 0, "words": []},
                    "original_text": "Hi.",
                }
            },
        )
    )
    assert out == [SentenceBegin(0, "Hi.")]
    proto.receive_text(
        event(t, "result-generated", {"output": {"type": "sentence-synthesis", "sentence": {"index": 0}}})
    )
    assert proto.receive_bytes(b"\x01\x02") == [AudioReceived(b"\x01\x02")]
    out = proto.receive_text(
        event(
            t,
            "result-generated",
            {
                "output": {
                    "type": "sentence-end",
                    "sentence": {"index": 0, "words": words},
                    "original_text": "Hi.",
                },
                "usage": {"characters": 3},
            },
        )
    )
    assert isinstance(out[0], WordsReceived) and out[0].words[0].begin_time == 80
    assert out[1] == SentenceEnd(0, "Hi.")
    assert out[2] == UsageUpdated(3)
    out = proto.receive_text(
        event(t, "task-finished", {"usage": {"characters": 3}}, attributes={"request_uuid": "r-1"})
    )
    assert out == [TaskFinished(t, "r-1", 3)]
    assert proto.state is TaskState.FINISHED


def test_task_finished_dialect_and_legacy_events() -> None:
    proto = started()
    t = proto.task_id
    legacy = proto.receive_text(
        event(
            t,
            "result-generated",
            {"output": {"sentence": {"words": [{"text": "a", "begin_time": 0, "end_time": 10}]}}},
        )
    )
    assert isinstance(legacy[0], WordsReceived) and legacy[0].index == 0
    out = proto.receive_text(
        event(
            t,
            "task-finished",
            {
                "output": {
                    "sentences": [
                        {
                            "index": 0,
                            "words": [
                                {
                                    "text": "a",
                                    "begin_index": 0,
                                    "end_index": 1,
                                    "begin_time": 0,
                                    "end_time": 10,
                                }
                            ],
                        },
                        {
                            "index": 1,
                            "words": [
                                {
                                    "text": "b",
                                    "begin_index": 0,
                                    "end_index": 1,
                                    "begin_time": 0,
                                    "end_time": 10,
                                }
                            ],
                        },
                    ]
                }
            },
        )
    )
    assert [e.index for e in out if isinstance(e, WordsReceived)] == [0, 1]
    assert isinstance(out[-1], TaskFinished)


def test_unknown_events_and_fields_are_tolerated_and_other_tasks_ignored() -> None:
    proto = started()
    assert proto.receive_text(event(proto.task_id, "something-new", {"x": 1}, extra=True)) == []
    assert proto.receive_text(event("another-task", "task-finished")) == []
    assert proto.state is TaskState.STARTED


@pytest.mark.parametrize(
    "bad",
    ["not json", "[1, 2]", json.dumps({"payload": {}}), json.dumps({"header": "x"})],
)
def test_malformed_messages_are_protocol_errors(bad: str) -> None:
    proto = started()
    [failed] = proto.receive_text(bad)
    assert isinstance(failed, TaskFailed) and isinstance(failed.error, ProtocolError)
    assert proto.state is TaskState.FAILED


def test_binary_before_started_and_second_task_started_are_protocol_errors() -> None:
    proto = TaskProtocol(SynthesisOptions())
    proto.start()
    [failed] = proto.receive_bytes(b"\x00\x00")
    assert isinstance(failed.error, ProtocolError)
    proto = started()
    [failed] = proto.receive_text(event(proto.task_id, "task-started"))
    assert isinstance(failed.error, ProtocolError)


@pytest.mark.parametrize(
    ("code", "message", "cls", "retryable"),
    [
        ("InvalidParameter", "[tts:]Engine return error code: 418", VoiceModelMismatchError, False),
        ("InvalidParameter", "[tts:]Engine return error code: 428", InstructionError, False),
        ("Throttling.RateQuota", "Requests rate limit exceeded", ThrottlingError, True),
        ("InvalidParameter", "request timeout after 23 seconds", ServerTimeoutError, False),
        ("InvalidParameter", "SSML text is not supported at the moment!", SSMLError, False),
        ("InternalError", "boom", CosyVoiceError, True),
    ],
)
def test_task_failed_maps_onto_the_hierarchy(code: str, message: str, cls: type, retryable: bool) -> None:
    proto = started()
    [failed] = proto.receive_text(event(proto.task_id, "task-failed", error_code=code, error_message=message))
    assert isinstance(failed.error, cls)
    assert failed.error.retryable is retryable
    assert code in str(failed.error) and proto.task_id in str(failed.error)
    assert error_from_task_failed(code, message).retryable is retryable


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.one_of(
        st.text(max_size=200),
        json_values.map(json.dumps),
        st.dictionaries(st.sampled_from(["header", "payload"]), json_values).map(json.dumps),
    )
)
def test_parser_never_raises_on_arbitrary_input(data: str) -> None:
    proto = started()
    for item in proto.receive_text(data):
        assert not isinstance(item, TaskFailed) or isinstance(item.error, CosyVoiceError)


@given(st.binary(max_size=64))
def test_parser_tolerates_arbitrary_bytes_as_text(data: bytes) -> None:
    proto = started()
    proto.receive_text(data)


@pytest.mark.parametrize(
    ("code", "message", "permanent"),
    [
        ("InvalidParameter", "[tts:]Engine return error code: 418", True),
        ("InvalidParameter", "Request voice is invalid!", True),
        ("InvalidParameter", "Please ensure input text is valid.", False),
        ("Throttling.RateQuota", "slow down", False),
        ("InternalError", "boom", False),
    ],
)
def test_permanent_errors_are_those_only_a_config_change_fixes(
    code: str, message: str, permanent: bool
) -> None:
    assert error_from_task_failed(code, message).permanent is permanent
