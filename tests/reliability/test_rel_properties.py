"""Property tests: the event parser takes anything a server could send without an exception
(errors come back as ``TaskFailed`` events), and the text splitter never loses, duplicates or
reorders a character and keeps every piece within the limit.

The parser's documented interface is "feed it what the server sent, get typed events back":
the only exceptions tolerated here are ``CosyVoiceError``s.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from reliability_support import ScriptedServer, drive

from cosyvoice_stream import AsyncSynthesizer, CosyVoiceError, ProtocolError, Timeouts
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
)
from cosyvoice_stream.text import MAX_MESSAGE_CHARACTERS, billable_characters, split_text

EVENT_TYPES = (
    TaskStarted,
    SentenceBegin,
    SentenceEnd,
    WordsReceived,
    AudioReceived,
    UsageUpdated,
    TaskFinished,
    TaskFailed,
)
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OWN_ID = "0123456789abcdef0123456789abcdef"

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
EVENTS = ["task-started", "result-generated", "task-finished", "task-failed", "task-progress"]
TYPES = ["sentence-begin", "sentence-synthesis", "sentence-end"]


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value most of the time, anything JSON the rest."""
    return st.one_of(strategy, strategy, json_values)


words = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "text": maybe(st.text(max_size=6)),
            "begin_index": maybe(st.integers(-5, 50)),
            "end_index": maybe(st.integers(-5, 50)),
            "begin_time": maybe(st.integers(-100, 10_000)),
            "end_time": maybe(st.integers(-100, 10_000)),
        },
    ),
    max_size=4,
)
sentence = st.fixed_dictionaries(
    {}, optional={"index": maybe(st.integers(-3, 10)), "words": maybe(words), "original_text": json_values}
)
output = st.fixed_dictionaries(
    {},
    optional={
        "type": maybe(st.sampled_from(TYPES)),
        "sentence": maybe(sentence),
        "sentences": maybe(st.lists(sentence, max_size=3)),
        "original_text": json_values,
    },
)
header = st.fixed_dictionaries(
    {"event": maybe(st.sampled_from(EVENTS))},
    optional={
        "task_id": st.one_of(st.just(OWN_ID), st.just("another-task"), json_values),
        "error_code": maybe(st.sampled_from(["InvalidParameter", "Throttling.RateQuota", "RequestTimeOut"])),
        "error_message": maybe(
            st.sampled_from(["[tts:]Engine return error code: 418", "request timeout after 23 seconds"])
        ),
        "attributes": maybe(st.fixed_dictionaries({}, optional={"request_uuid": json_values})),
    },
)
payload = st.fixed_dictionaries(
    {},
    optional={
        "output": maybe(output),
        "usage": maybe(st.fixed_dictionaries({}, optional={"characters": json_values})),
    },
)
server_messages = st.fixed_dictionaries({"header": maybe(header)}, optional={"payload": maybe(payload)}).map(
    json.dumps
)
frames = st.lists(
    st.one_of(server_messages, st.binary(max_size=32), st.text(max_size=40), json_values.map(json.dumps)),
    max_size=12,
)
STATES = ["idle", "starting", "started", "finishing"]


def protocol_in(state: str) -> TaskProtocol:
    proto = TaskProtocol(SynthesisOptions(word_timestamp_enabled=True), task_id=OWN_ID)
    if state == "idle":
        return proto
    proto.start()
    if state == "starting":
        return proto
    proto.receive_text(json.dumps({"header": {"task_id": OWN_ID, "event": "task-started"}}))
    proto.send_text("Hello there.")
    if state == "finishing":
        proto.finish()
    return proto


def feed(proto: TaskProtocol, frame: str | bytes, *, as_text: bool = True) -> list[Any]:
    try:
        if isinstance(frame, bytes) and not as_text:
            return proto.receive_bytes(frame)
        return proto.receive_text(frame)
    except CosyVoiceError:
        return []  # documented: a typed error


def check_parser(state: str, sequence: list[Any]) -> None:
    proto = protocol_in(state)
    failed = False
    for frame in sequence:
        was_receiving = proto.state in (TaskState.STARTED, TaskState.FINISHING)
        events = feed(proto, frame, as_text=isinstance(frame, str))
        assert all(isinstance(event, EVENT_TYPES) for event in events)
        if any(isinstance(event, AudioReceived) for event in events):
            assert was_receiving, "audio accepted outside a started task"
        if any(isinstance(event, TaskFailed) for event in events):
            assert proto.state is TaskState.FAILED and isinstance(proto.error, CosyVoiceError)
            failed = True
        if failed:
            assert proto.state is TaskState.FAILED, "a failed task came back to life"
        for event in events:
            if isinstance(event, TaskFailed):
                assert str(event.error)


@PROPERTY
@given(state=st.sampled_from(STATES), sequence=frames)
@example(state="started", sequence=["[" * 100_000])
@example(
    state="started",
    sequence=[json.dumps({"header": {"task_id": OWN_ID, "event": "task-failed", "error_code": 418}})],
)
@example(
    state="starting",
    sequence=[json.dumps({"header": {"event": "task-failed", "error_code": "X", "error_message": ["418"]}})],
)
def test_event_parser_never_raises_and_keeps_its_state_machine(state: str, sequence: list[Any]) -> None:
    """Found: a task-failed with a numeric code or a list message (AttributeError), deeply
    nested JSON (RecursionError); fixed in protocol.py, kept as explicit examples."""
    check_parser(state, sequence)


@PROPERTY
@given(state=st.sampled_from(STATES), data=st.binary(max_size=64))
def test_arbitrary_binary_frames_are_audio_or_a_protocol_error(state: str, data: bytes) -> None:
    proto = protocol_in(state)
    events = proto.receive_bytes(data)
    if state in ("started", "finishing"):
        assert events == [AudioReceived(data)]
    else:
        [failed] = events
        assert isinstance(failed, TaskFailed) and isinstance(failed.error, ProtocolError)


# -- the text splitter ----------------------------------------------------------------------

SENTENCE_ENDS = set(".!?。！？；;…\n")
CLAUSE_ENDS = set(",，、:：）)]」』”\"'")
SPLIT_ALPHABET = st.sampled_from(
    ["a", "b", " ", "\n", "\t", ".", "!", "?", ",", "。", "，", "中", "文", "\U00020000", "é", "\ud83d\ude00"]
)
texts = st.one_of(
    st.text(max_size=400),
    st.lists(SPLIT_ALPHABET, max_size=400).map("".join),
    st.lists(st.sampled_from(["中", "文", "字"]), max_size=300).map("".join),
)


def boundary_rank(char: str) -> int:
    if char in SENTENCE_ENDS:
        return 3
    if char in CLAUSE_ENDS:
        return 2
    if char.isspace():
        return 1
    return 0


@settings(max_examples=400, deadline=None)
@given(text=texts, limit=st.integers(min_value=2, max_value=60))
@example(text="a" * 5000, limit=MAX_MESSAGE_CHARACTERS)
@example(text="中" * 1500, limit=MAX_MESSAGE_CHARACTERS)
@example(text="ab\ud83d\ude00cd", limit=3)
def test_split_text_never_loses_duplicates_or_reorders(text: str, limit: int) -> None:
    pieces = split_text(text, limit)
    assert "".join(pieces) == text  # nothing lost, duplicated or reordered
    assert all(pieces), "an empty piece"
    for piece in pieces:
        assert billable_characters(piece) <= limit, (piece, limit)
    for piece in pieces[:-1]:
        assert not ("\ud800" <= piece[-1] <= "\udbff"), "a surrogate pair was split"
        # The best boundary wins: a piece that holds a better boundary ends on one as good.
        best = max((boundary_rank(c) for c in piece), default=0)
        assert boundary_rank(piece[-1]) >= best, (piece, best)


@settings(max_examples=100, deadline=None)
@given(text=st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=9000))
def test_streamed_text_goes_out_in_order_within_the_message_limit(text: str) -> None:
    """What the protocol sends for one push: continue-task messages in order, each within 2,000."""
    proto = protocol_in("started")
    proto.data_to_send()
    proto.send_text(text)
    sent = [json.loads(m)["payload"]["input"]["text"] for m in proto.data_to_send()]
    assert "".join(sent) == text
    assert all(0 < billable_characters(piece) <= MAX_MESSAGE_CHARACTERS for piece in sent)


def test_split_text_refuses_a_limit_below_two() -> None:
    with pytest.raises(CosyVoiceError, match="limit"):
        split_text("abc", 1)


# -- the same input end to end: a hostile server must not make the client hang ----------------

STARTED = '{"header":{"task_id":"TASK_ID","event":"task-started","attributes":{}},"payload":{}}'
HOSTILE = [
    pytest.param(["[" * 100_000], id="deeply-nested-json"),
    pytest.param(
        ['{"header":{"task_id":"TASK_ID","event":"task-failed","error_code":418,"error_message":null}}'],
        id="task-failed-with-a-numeric-code",
    ),
    pytest.param(
        ['{"header":{"task_id":"TASK_ID","event":"task-failed","error_code":"X","error_message":{"a":1}}}'],
        id="task-failed-with-an-object-message",
    ),
]


@pytest.mark.parametrize("script", HOSTILE)
async def test_hostile_server_frames_give_a_typed_error_not_a_hang(script: list[str]) -> None:
    async with ScriptedServer([STARTED, *script]) as hostile:
        async with AsyncSynthesizer(url=hostile.url, timeouts=Timeouts(idle=1.0, first_audio=1.0)) as synth:
            out = await drive(synth.synthesize("Hello."), 1.0)
    assert not out.timed_out, "the client hung on a malformed server message"
    assert isinstance(out.error, CosyVoiceError)


async def test_hostile_server_scripted_garbage_is_a_protocol_error() -> None:
    """Control for the test above: garbage the parser does handle ends the utterance cleanly."""
    async with ScriptedServer([STARTED, "{not json", b"\x00audio?"]) as hostile:
        async with AsyncSynthesizer(url=hostile.url, timeouts=Timeouts(idle=1.0)) as synth:
            out = await drive(synth.synthesize("Hello."), 3)
    assert isinstance(out.error, ProtocolError) and not out.timed_out
    assert out.audio == b""
