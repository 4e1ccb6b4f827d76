"""The CosyVoice duplex WebSocket protocol, sans-I/O.

This is the only module of the client that knows the wire format: message
layouts, field names, event names and error codes. It never touches a
socket, a clock or a thread: feed it what the server sent
(``receive_text`` / ``receive_bytes``), get typed events back, and send what
it leaves in its outbox (``data_to_send``).

One ``TaskProtocol`` is one task (run-task .. task-finished/failed). Binary
frames carry no task id, so a connection runs one task at a time.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import (
    AuthenticationError,
    CosyVoiceError,
    InstructionError,
    InvalidParameterError,
    ProtocolError,
    ServerError,
    ServerTimeoutError,
    SSMLError,
    TextLimitError,
    ThrottlingError,
    VoiceModelMismatchError,
)
from .options import SynthesisOptions
from .redact import server_text
from .text import (
    MAX_MESSAGE_CHARACTERS,
    MAX_TASK_CHARACTERS,
    billable_characters,
    check_text,
    is_ssml,
    split_text,
)


@dataclass(frozen=True)
class RawWord:
    """One word as the server reports it (times in ms, indexes into the sentence or task text)."""

    text: str
    begin_index: int | None
    end_index: int | None
    begin_time: int
    end_time: int


@dataclass(frozen=True)
class TaskStarted:
    task_id: str


@dataclass(frozen=True)
class SentenceBegin:
    index: int
    text: str | None


@dataclass(frozen=True)
class SentenceEnd:
    index: int
    text: str | None


@dataclass(frozen=True)
class WordsReceived:
    """Word timings for one sentence; may repeat words already received (dialects).

    ``index`` None: the words of the whole task in one list (a task-finished
    ``output.sentence`` without an index), possibly spanning several sentences.
    """

    index: int | None
    words: tuple[RawWord, ...]
    text: str | None = None


@dataclass(frozen=True)
class AudioReceived:
    data: bytes


@dataclass(frozen=True)
class UsageUpdated:
    characters: int


@dataclass(frozen=True)
class TaskFinished:
    task_id: str
    request_uuid: str | None
    characters: int | None


@dataclass(frozen=True)
class TaskFailed:
    """The task failed: ``error`` is the mapped exception.

    For a task-failed event of the server, ``raw`` is the message as received
    and ``error_code`` / ``error_message`` its fields (the SDK hands the raw
    message to ``on_error`` and builds ``RequestFailure`` from the fields);
    they are None for failures the client detected itself.
    """

    error: CosyVoiceError
    raw: str | None = None
    error_code: str | None = None
    error_message: str | None = None


@dataclass(frozen=True)
class ResultGenerated:
    """A result-generated event of this task, as received (the SDK's ``on_event`` message)."""

    raw: str


ProtocolEvent = (
    TaskStarted
    | SentenceBegin
    | SentenceEnd
    | WordsReceived
    | AudioReceived
    | UsageUpdated
    | TaskFinished
    | TaskFailed
    | ResultGenerated
)


class TaskState(enum.Enum):
    IDLE = "idle"
    STARTING = "starting"  # run-task sent, waiting for task-started
    STARTED = "started"
    FINISHING = "finishing"  # finish-task sent
    FINISHED = "finished"
    FAILED = "failed"


_ACTIVE = (TaskState.STARTING, TaskState.STARTED, TaskState.FINISHING)

#: Longest plausible word time (ms): a task of 200,000 characters is hours of
#: audio, never a day. Larger times (10**300) are the server breaking the protocol.
MAX_WORD_TIME_MS = 24 * 3600 * 1000


def new_task_id() -> str:
    return uuid.uuid4().hex


#: One encoder for every message: json.dumps() with these arguments builds a new one per call.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _message(action: str, task_id: str, payload: dict[str, Any]) -> str:
    header = {"action": action, "task_id": task_id, "streaming": "duplex"}
    return _ENCODER.encode({"header": header, "payload": payload})


def wire_parameters(options: SynthesisOptions, *, ssml: bool) -> dict[str, Any]:
    """The ``payload.parameters`` object of run-task for ``options``."""
    params: dict[str, Any] = {
        "text_type": "PlainText",
        "voice": options.voice,
        "format": options.format,
        "sample_rate": options.sample_rate,
        "volume": options.volume,
        "rate": options.speech_rate,
        "pitch": options.pitch_rate,
        "seed": options.seed,
    }
    if options.format == "opus":
        params["bit_rate"] = options.bit_rate if options.bit_rate is not None else 32
    if options.word_timestamp_enabled:
        params["word_timestamp_enabled"] = True
    if options.language_hints:
        params["language_hints"] = list(options.language_hints)
    if options.instruction is not None:
        params["instruction"] = options.instruction
    if ssml:
        params["enable_ssml"] = True
    if options.enable_aigc_tag:
        params["enable_aigc_tag"] = True
        if options.aigc_propagator is not None:
            params["aigc_propagator"] = options.aigc_propagator
        if options.aigc_propagate_id is not None:
            params["aigc_propagate_id"] = options.aigc_propagate_id
    params.update(options.additional_params)
    return params


def handshake_headers(
    api_key: str, *, workspace: str | None = None, user_agent: str | None = None
) -> dict[str, str]:
    """HTTP headers of the WebSocket handshake. The key goes only here."""
    headers = {"Authorization": f"Bearer {api_key}"}
    if workspace:
        headers["X-DashScope-WorkSpace"] = workspace
    if user_agent:
        headers["User-Agent"] = user_agent
    return headers


def error_from_handshake(status: int, body: bytes | str = b"") -> CosyVoiceError:
    """The error for a refused handshake (HTTP status other than 101)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    detail = f" ({server_text(text.strip(), 200)})" if text.strip() else ""
    if status in (401, 403):
        return AuthenticationError(
            f"the service refused the API key or token (HTTP {status}){detail}; check"
            " DASHSCOPE_API_KEY and that the key belongs to the endpoint's region",
            code=f"HTTP{status}",
        )
    if status == 429:
        return ThrottlingError(f"the service is throttling this account (HTTP 429){detail}", code="HTTP429")
    if status >= 500:
        return ServerError(f"the service failed the handshake (HTTP {status}){detail}", code=f"HTTP{status}")
    return ServerError(
        f"unexpected handshake response HTTP {status}{detail}", code=f"HTTP{status}", retryable=False
    )


def error_from_task_failed(code: object, message: object, task_id: str | None = None) -> CosyVoiceError:
    """Map a task-failed event (error_code, error_message) onto the exception hierarchy.

    Fields of the wrong type (a hostile or broken server) are shown, not trusted.
    """
    code = server_text(code, 100) if code is not None and code != "" else "UnknownError"
    message = server_text(message) if message is not None and message != "" else "task failed"
    text = f"{code}: {message}"
    lowered = message.lower()
    cls: type[CosyVoiceError]
    if "418" in message:
        cls = VoiceModelMismatchError
        text += " (the voice does not exist for this model: check the voice list of the model)"
    elif "428" in message:
        cls = InstructionError
        text += " (the instruction is not valid for this voice or model)"
    elif code.startswith("Throttling"):
        cls = ThrottlingError
    elif "timeout after 23 seconds" in lowered:
        cls = ServerTimeoutError
        text += " (no text or finish reached the server for 23 s)"
    elif "ssml" in lowered:
        cls = SSMLError
    elif (
        code in ("InvalidApiKey", "Unauthorized", "AccessDenied")
        or "api key" in lowered
        or "apikey" in lowered
    ):
        cls = AuthenticationError
    elif code.startswith("InvalidParameter") or code.startswith("BadRequest") or "invalid" in lowered:
        cls = InvalidParameterError
        if "voice" in lowered or "model" in lowered:
            # "Request voice is invalid!", "Model not found": every request fails alike.
            return cls(text, code=code, task_id=task_id, permanent=True)
    else:
        cls = ServerError
    return cls(text, code=code, task_id=task_id)


def failure_message(task_id: str, code: str, message: str) -> str:
    """A task-failed message, as the server would send it, for a failure the client detected.

    The SDK's ``on_error`` receives the server's task-failed text; a client-side
    failure (connection lost, timeout) is reported in the same shape.
    """
    header = {
        "task_id": task_id,
        "event": "task-failed",
        "error_code": code,
        "error_message": message,
        "attributes": {},
    }
    return json.dumps({"header": header, "payload": {}}, ensure_ascii=False)


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _word_time(value: Any) -> int | None:
    """A word time in ms; None when absent or not a number; ProtocolError when absurd."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if not (isinstance(value, int) or math.isfinite(value)) or not 0 <= value <= MAX_WORD_TIME_MS:
        shown = "a huge number" if isinstance(value, int) and value.bit_length() > 64 else repr(value)
        raise ProtocolError(f"the server sent an impossible word time: {shown} ms")
    return round(value)


def _parse_words(raw: Any) -> tuple[RawWord, ...]:
    if not isinstance(raw, list):
        return ()
    words = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        text = item.get("text")
        begin, end = _word_time(item.get("begin_time")), _word_time(item.get("end_time"))
        if not isinstance(text, str) or begin is None or end is None:
            continue
        words.append(
            RawWord(text, _as_int(item.get("begin_index")), _as_int(item.get("end_index")), begin, end)
        )
    return tuple(words)


def check_fragment(text: str, *, ssml: bool, characters_sent: int, messages_sent: int) -> list[str]:
    """Validate one text fragment against every limit; return its continue-task pieces.

    ``characters_sent``/``messages_sent`` are what the task already took.
    """
    check_text(text)
    if not ssml and is_ssml(text):
        raise SSMLError(
            "SSML is not allowed on streaming input: pass the whole SSML document to"
            " synthesize() (one message, enable_ssml)",
            parameter="text",
        )
    count = billable_characters(text)
    if characters_sent + count > MAX_TASK_CHARACTERS:
        raise TextLimitError(
            f"text would bring the task to {characters_sent + count} billable characters;"
            f" a task takes at most {MAX_TASK_CHARACTERS}",
            parameter="text",
        )
    if not ssml:
        return split_text(text, MAX_MESSAGE_CHARACTERS)
    if messages_sent:
        raise SSMLError("an SSML task takes exactly one text message", parameter="text")
    if count > MAX_MESSAGE_CHARACTERS:
        raise TextLimitError(
            f"SSML text has {count} billable characters; one SSML request takes at most"
            f" {MAX_MESSAGE_CHARACTERS} (SSML cannot be split)",
            parameter="text",
        )
    if is_ssml(text):
        _check_ssml_document(text)
    return [text]


def _check_ssml_document(text: str) -> None:
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise SSMLError(f"the SSML document is not well-formed XML: {exc}", parameter="text") from None
    if root.tag != "speak":
        raise SSMLError(f"the SSML root element must be <speak>, got <{root.tag}>", parameter="text")


class TaskProtocol:
    """State machine of one synthesis task.

    ``ssml=True`` is the whole-text path: ``enable_ssml`` is requested and only
    one continue-task may be sent. Text sent before task-started is held and
    released when the server confirms the task.
    """

    def __init__(self, options: SynthesisOptions, *, task_id: str | None = None, ssml: bool = False) -> None:
        if ssml:
            options.check_ssml()  # a catalogue voice without SSML: refused before sending
        self.options = options
        self.task_id = task_id or new_task_id()
        self.ssml = ssml
        self.state = TaskState.IDLE
        self.characters_sent = 0  # billable, offline estimate
        self.usage_characters: int | None = None
        self.request_uuid: str | None = None
        self.error: CosyVoiceError | None = None
        self._outbox: list[str] = []
        self._held: list[str] = []
        self._finish_held = False
        self._flush_message: str | None = None
        #: A flush was queued and nothing of the task's output (a result or audio) came since:
        #: a failure now is the server's answer to the flush.
        self.flush_outstanding = False
        self._messages_sent = 0
        self._sentence_counter = -1
        #: Events and audio of this task received so far: what proves the task alive.
        #: Events of other tasks and unknown events do not count.
        self.progress = 0
        # A binary frame belongs to the task of the event before it: after an
        # event of another task, audio is refused until this task speaks again.
        self._audio_is_ours = True
        # Old servers send result-generated without type/index: a sentence
        # opens with its first such event and closes with the one after its audio.
        self._legacy_open = False
        self._legacy_audio = False

    # -- client side ------------------------------------------------------
    def start(self) -> None:
        """Queue run-task."""
        if self.state is not TaskState.IDLE:
            raise ProtocolError(f"start() in state {self.state.value}", task_id=self.task_id)
        payload = {
            "task_group": "audio",
            "task": "tts",
            "function": "SpeechSynthesizer",
            "model": self.options.model,
            "parameters": wire_parameters(self.options, ssml=self.ssml),
            "input": {},
        }
        self._outbox.append(_message("run-task", self.task_id, payload))
        self.state = TaskState.STARTING

    def send_text(self, text: str) -> None:
        """Queue continue-task message(s) for ``text`` (split above the per-message limit)."""
        if self.state not in (TaskState.STARTING, TaskState.STARTED):
            raise ProtocolError(
                f"cannot send text to a task that is {self.state.value}", task_id=self.task_id
            )
        pieces = check_fragment(
            text, ssml=self.ssml, characters_sent=self.characters_sent, messages_sent=self._messages_sent
        )
        self.characters_sent += billable_characters(text)
        for piece in pieces:
            msg = _message("continue-task", self.task_id, {"input": {"text": piece}})
            self._messages_sent += 1
            if self.state is TaskState.STARTING:
                self._held.append(msg)
            else:
                self._outbox.append(msg)

    def flush(self) -> None:
        """Queue a flush: the server synthesizes what it holds now and the task goes on.

        The official SDK's ``streaming_flush()`` message (continue-task with
        ``payload.input.flush``), including the fields it repeats, since the
        service documents it nowhere else.
        """
        if self.state not in (TaskState.STARTING, TaskState.STARTED) or self._finish_held:
            raise ProtocolError(f"flush() in state {self.state.value}", task_id=self.task_id)
        payload = {
            "model": self.options.model,
            "task_group": "audio",
            "task": "tts",
            "function": "SpeechSynthesizer",
            "input": {"flush": True},
        }
        msg = _message("continue-task", self.task_id, payload)
        self._flush_message = msg
        self.flush_outstanding = True
        if self.state is TaskState.STARTING:
            self._held.append(msg)
        else:
            self._outbox.append(msg)

    def cancel(self) -> None:
        """Queue the cancel directive: finish-task whose ``input.directive`` is ``"cancel"``.

        The server stops synthesizing and ends the task with task-finished;
        audio it sent before that still arrives (the caller drops it).
        Allowed while the task runs or is finishing (a second finish-task).
        """
        if self.state not in (TaskState.STARTED, TaskState.FINISHING):
            raise ProtocolError(f"cancel() in state {self.state.value}", task_id=self.task_id)
        self._outbox.append(_message("finish-task", self.task_id, {"input": {"directive": "cancel"}}))
        self.state = TaskState.FINISHING

    def finish(self) -> None:
        """Queue finish-task: no more text; the server synthesizes what it buffered."""
        # finish-task synthesizes everything too: a flush still queued just before it says nothing more.
        for queue in (self._held, self._outbox):
            if queue and queue[-1] is self._flush_message:
                queue.pop()
                self.flush_outstanding = False
        if self.state is TaskState.STARTING:
            self._finish_held = True
            return
        if self.state is not TaskState.STARTED:
            raise ProtocolError(f"finish() in state {self.state.value}", task_id=self.task_id)
        self._queue_finish()

    @property
    def finish_requested(self) -> bool:
        return self._finish_held or self.state is TaskState.FINISHING

    @property
    def active(self) -> bool:
        return self.state in _ACTIVE

    def _queue_finish(self) -> None:
        self._outbox.append(_message("finish-task", self.task_id, {"input": {}}))
        self.state = TaskState.FINISHING

    def data_to_send(self) -> list[str]:
        """Messages to send now, in order; the outbox is emptied."""
        out, self._outbox = self._outbox, []
        return out

    # -- server side ------------------------------------------------------
    def receive_bytes(self, data: bytes) -> list[ProtocolEvent]:
        if self.state not in (TaskState.STARTED, TaskState.FINISHING):
            return self._fail(
                ProtocolError(
                    f"audio frame received while the task is {self.state.value}", task_id=self.task_id
                )
            )
        if not self._audio_is_ours:
            return self._fail(
                ProtocolError(
                    "audio frame received after an event of another task: it cannot be this task's",
                    task_id=self.task_id,
                )
            )
        self.progress += 1
        self.flush_outstanding = False
        self._legacy_audio = True
        return [AudioReceived(bytes(data))]

    def receive_text(self, data: str | bytes) -> list[ProtocolEvent]:
        """Events of one text message (``ResultGenerated`` left out: see ``receive_message``)."""
        return [e for e in self.receive_message(data) if not isinstance(e, ResultGenerated)]

    def receive_message(self, data: str | bytes) -> list[ProtocolEvent]:
        """Every event of one text message, ``ResultGenerated`` (the raw message) included.

        Empty when the message is not progress of this task: another task's
        event, or an event this protocol does not know.
        """
        try:
            message = json.loads(data)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return self._fail(
                ProtocolError(
                    f"malformed JSON from the server: {server_text(str(data), 120)!r}", task_id=self.task_id
                )
            )
        header = message.get("header") if isinstance(message, dict) else None
        if not isinstance(header, dict):
            return self._fail(ProtocolError("server message without a header object", task_id=self.task_id))
        event = header.get("event")
        task_id = header.get("task_id")
        if task_id is not None and task_id != self.task_id:
            # A straggler of an earlier task on this connection: not ours, and
            # neither is a binary frame right after it.
            self._audio_is_ours = False
            return []
        if event in ("task-started", "task-failed", "result-generated", "task-finished"):
            self.progress += 1
            self._audio_is_ours = True
        payload = message.get("payload")
        payload = payload if isinstance(payload, dict) else {}
        if event == "task-started":
            return self._on_started()
        if event == "task-failed":
            code, text = header.get("error_code"), header.get("error_message")
            error = error_from_task_failed(code, text, self.task_id)
            self.state = TaskState.FAILED
            self.error = error
            raw = data if isinstance(data, str) else data.decode("utf-8", "replace")
            return [
                TaskFailed(
                    error,
                    raw=raw,
                    error_code=code if isinstance(code, str) else None,
                    error_message=text if isinstance(text, str) else None,
                )
            ]
        if self.state not in (TaskState.STARTED, TaskState.FINISHING):
            if event in ("result-generated", "task-finished"):
                return self._fail(
                    ProtocolError(
                        f"{event} received while the task is {self.state.value}", task_id=self.task_id
                    )
                )
            return []
        try:
            if event == "result-generated":
                raw = data if isinstance(data, str) else data.decode("utf-8", "replace")
                return [ResultGenerated(raw), *self._on_result(payload)]
            if event == "task-finished":
                return self._on_finished(header, payload)
        except ProtocolError as error:
            error.task_id = self.task_id
            return self._fail(error)
        return []  # unknown events are tolerated

    def _fail(self, error: CosyVoiceError) -> list[ProtocolEvent]:
        self.state = TaskState.FAILED
        self.error = error
        return [TaskFailed(error)]

    def _on_started(self) -> list[ProtocolEvent]:
        if self.state is not TaskState.STARTING:
            return self._fail(
                ProtocolError(
                    f"task-started received while the task is {self.state.value}", task_id=self.task_id
                )
            )
        self.state = TaskState.STARTED
        self._outbox.extend(self._held)
        self._held = []
        if self._finish_held:
            self._finish_held = False
            self._queue_finish()
        return [TaskStarted(self.task_id)]

    def _usage(self, payload: dict[str, Any]) -> list[ProtocolEvent]:
        usage = payload.get("usage")
        characters = _as_int(usage.get("characters")) if isinstance(usage, dict) else None
        if characters is None or characters == self.usage_characters:
            return []
        self.usage_characters = characters
        return [UsageUpdated(characters)]

    def _sentence_events(
        self, output: dict[str, Any], kind: Any, *, final: bool = False
    ) -> list[ProtocolEvent]:
        """Events of one result (``kind``: its type) or, ``final``, of task-finished's output."""
        sentence = output.get("sentence")
        events: list[ProtocolEvent] = []
        sentences = output.get("sentences")
        if isinstance(sentences, list):  # all sentences at once (task-finished dialect)
            for position, item in enumerate(sentences):
                if isinstance(item, dict) and _as_int(item.get("index")) is None:
                    item = {**item, "index": position}  # old servers: the list is in sentence order
                events.extend(self._sentence_events({"sentence": item}, None, final=True))
            return events
        if not isinstance(sentence, dict):
            return events
        index = _as_int(sentence.get("index"))
        text = output.get("original_text", sentence.get("original_text", sentence.get("text")))
        text = text if isinstance(text, str) else None
        words = _parse_words(sentence.get("words"))
        if final:
            if words:
                # Without an index, the list may hold every word of the task.
                events.append(WordsReceived(index, words, text))
            return events
        if kind is None and index is None:
            return self._legacy_events(text, words)
        if kind == "sentence-begin":
            self._sentence_counter = index if index is not None else self._sentence_counter + 1
            events.append(SentenceBegin(self._sentence_counter, text))
            index = self._sentence_counter
        elif index is None:
            index = max(self._sentence_counter, 0)
        if words:
            events.append(WordsReceived(index, words, text))
        if kind == "sentence-end":
            events.append(SentenceEnd(index, text))
        return events

    def _legacy_events(self, text: str | None, words: tuple[RawWord, ...]) -> list[ProtocolEvent]:
        """A result-generated without type or index: infer where its sentence begins and ends.

        The first event of a sentence (with its text or words) opens it; an
        event with words, or with the text again after the sentence's audio,
        closes it. Sentence indexes count from 0 like the typed events'.
        """
        events: list[ProtocolEvent] = []
        if not self._legacy_open and (text is not None or words):
            self._sentence_counter += 1
            self._legacy_open = True
            self._legacy_audio = False
            if not words:
                events.append(SentenceBegin(self._sentence_counter, text))
                return events
            # Words first: this is the sentence's end, its beginning went unannounced.
        if not self._legacy_open:
            return events  # a synthesis event outside any sentence: nothing to learn
        index = self._sentence_counter
        if words:
            events.append(WordsReceived(index, words, text))
        if words or (text is not None and self._legacy_audio):
            self._legacy_open = False
            events.append(SentenceEnd(index, text))
        return events

    def _on_result(self, payload: dict[str, Any]) -> list[ProtocolEvent]:
        self.flush_outstanding = False
        output = payload.get("output")
        output = output if isinstance(output, dict) else {}
        events = self._sentence_events(output, output.get("type"))
        events.extend(self._usage(payload))
        return events

    def _on_finished(self, header: dict[str, Any], payload: dict[str, Any]) -> list[ProtocolEvent]:
        output = payload.get("output")
        events = self._sentence_events(output, None, final=True) if isinstance(output, dict) else []
        events.extend(self._usage(payload))
        attributes = header.get("attributes")
        if isinstance(attributes, dict) and isinstance(attributes.get("request_uuid"), str):
            self.request_uuid = attributes["request_uuid"]
        self.state = TaskState.FINISHED
        events.append(TaskFinished(self.task_id, self.request_uuid, self.usage_characters))
        return events
