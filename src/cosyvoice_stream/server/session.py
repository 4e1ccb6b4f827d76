"""One WebSocket connection of the embedded server: the protocol, task by task.

The reader (``Connection.run``) parses client messages, segments text into
sentences and queues them; one producer coroutine per task synthesizes the
queued sentences in order and sends the events and audio. Every send goes
through one lock, so a ``sentence-synthesis`` event and its binary frame are
never separated, and a producer is only ever cancelled between two sends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from ..text import billable_characters, is_ssml, strip_ssml
from .config import ServerConfig, TaskRecord
from .encoders import EncoderUnavailableError, TaskEncoder, make_encoder
from .engines import Engine
from .enrollment import VoiceStore
from .faults import Fault, FaultBook
from .model import Sentence, Synthesis, VoiceSettings, Word
from .params import TaskError, TaskParameters, invalid, no_cloned_voices, parse_run_task
from .segmenter import Segmenter, plain_characters
from .ssml import SsmlError, ssml_sentences

logger = logging.getLogger("cosyvoice_stream.server")

TIMEOUT_MESSAGE = "request timeout after 23 seconds"
SSML_NOT_SUPPORTED = "SSML text is not supported at the moment!"
SSML_LIMIT = "Text request limit violated, expected 1."
EMPTY_TEXT = "Please ensure input text is valid."
FLUSH_REJECTED = "input.flush is not supported"
_TOP_LEVEL_FIELDS = frozenset({"header", "payload"})


def task_tag(sequence: int) -> int:
    """The tone amplitude of the ``sequence``-th task of a server (unique, never 0)."""
    tag = (1000 + 37 * sequence) % 30000
    return tag or 30000


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def event_message(task_id: str | None, event: str, payload: dict[str, Any], **attributes: Any) -> str:
    header = {"task_id": task_id, "event": event, "attributes": attributes}
    return _dumps({"header": header, "payload": payload})


def failed_message(task_id: str | None, code: str, message: str) -> str:
    header: dict[str, Any] = {
        "task_id": task_id,
        "event": "task-failed",
        "error_code": code,
        "error_message": message,
        "attributes": {},
    }
    return _dumps({"header": header, "payload": {}})


class ServerContext:
    """State shared by all connections of one server."""

    def __init__(self, config: ServerConfig, engine: Engine, executor: Executor | None) -> None:
        self.config = config
        self.engine = engine
        self.executor = executor
        self.faults = FaultBook()
        self.tasks: list[TaskRecord] = []  # the last config.max_task_records
        self.connections_opened = 0
        self.active_connections = 0
        self._sequence = 0
        self._connection_ids = 0
        self._lock = threading.Lock()
        #: Set whenever a client message was handled or a frame sent (see EmbeddedServer.wait_until).
        self.changed = asyncio.Event()
        #: Cloned voices (set by EmbeddedServer): a cloned id speaks only with its target model.
        self.voices: VoiceStore | None = None

    def next_task_sequence(self) -> int:
        with self._lock:
            sequence = self._sequence
            self._sequence += 1
            return sequence

    def next_connection_id(self) -> int:
        with self._lock:
            self._connection_ids += 1
            return self._connection_ids


class _Dropped(Exception):
    """The connection was aborted by a drop fault."""


_FINISH = None  # queue marker: no more sentences


@dataclass
class _Queued:
    sentence: Sentence
    at: float  # loop time the sentence became complete


@dataclass
class TaskRun:
    record: TaskRecord
    params: TaskParameters | None = None
    voice: VoiceSettings | None = None
    encoder: TaskEncoder | None = None
    faults: dict[str, Fault] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)
    segmenter: Segmenter = field(default_factory=Segmenter)
    queue: asyncio.Queue[_Queued | None] = field(default_factory=asyncio.Queue)
    producer: asyncio.Task[None] | None = None
    finishing: bool = False
    done: bool = False
    ssml: bool = False
    got_text: bool = False
    characters: int = 0  # billable characters received
    consumed: int = 0  # billable characters handed to sentences so far
    sentence_index: int = 0
    audio_ms: float = 0.0  # task audio produced so far (word time origin)
    finished_sentences: list[dict[str, Any]] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.record.task_id


class Connection:
    """Plays the service's side of the protocol on one WebSocket."""

    def __init__(self, context: ServerContext, ws: ServerConnection) -> None:
        self.context = context
        self.config = context.config
        self.ws = ws
        self.id = context.next_connection_id()
        self.task: TaskRun | None = None
        # Ended task ids, oldest first, bounded: a long-lived connection must not grow without end.
        self._ended_ids: OrderedDict[str, None] = OrderedDict()
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False

    # -- plumbing ---------------------------------------------------------
    async def run(self) -> None:
        self._arm_idle()
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    await self._close(1003, "binary frames are not accepted")
                    break
                await self._on_message(message)
                self.context.changed.set()
                if self._closing:
                    break
        except ConnectionClosed:
            pass
        finally:
            self.context.changed.set()
            self._disarm()
            task = self.task
            if task is not None and not task.done:
                task.done = True
                task.record.state = "aborted"
                await self._stop_producer(task)
            pending = [t for t in self._background if not t.done() and t is not asyncio.current_task()]
            if pending:
                await asyncio.wait(pending, timeout=5.0)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        background = asyncio.create_task(coro)
        self._background.add(background)
        background.add_done_callback(self._background.discard)

    async def _send(self, data: str | bytes) -> None:
        async with self._send_lock:
            await self.ws.send(data)
        self.context.changed.set()

    async def _send_pair(self, event: str, audio: bytes) -> None:
        async with self._send_lock:
            await self.ws.send(event)
            await self.ws.send(audio)
        self.context.changed.set()

    async def _close(self, code: int, reason: str) -> None:
        self._closing = True
        self._disarm()
        try:
            await self.ws.close(code, reason)
        except ConnectionClosed:  # pragma: no cover - already closed
            pass

    def _abort_transport(self) -> None:
        self._closing = True
        self._disarm()
        self.ws.transport.abort()

    async def _stop_producer(self, task: TaskRun) -> None:
        producer = task.producer
        if producer is None or producer.done() or producer is asyncio.current_task():
            return
        async with self._send_lock:  # never between an event and its audio frame
            producer.cancel()
        await asyncio.wait({producer})
        # The cancelled task keeps its CancelledError, whose traceback holds the producer's
        # frames and so this task and connection: let go of it, or every cancelled task
        # leaves a reference cycle for the garbage collector (whose full passes then stall
        # a busy server for tens of milliseconds).
        task.producer = None

    # -- timers -----------------------------------------------------------
    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_idle(self) -> None:
        self._disarm()
        self._timer = self._loop.call_later(self.config.idle_timeout_s, self._on_idle_timer)

    def _arm_text(self, task: TaskRun) -> None:
        self._disarm()
        self._timer = self._loop.call_later(self.config.text_timeout_s, self._on_text_timer, task)

    def _on_idle_timer(self) -> None:
        self._timer = None
        if self.task is None and not self._closing:
            self._spawn(self._close(1000, "idle timeout"))

    def _on_text_timer(self, task: TaskRun) -> None:
        self._timer = None
        if self.task is task and not task.done and not task.finishing:
            self._spawn(self._fail(task, "RequestTimeOut", TIMEOUT_MESSAGE))

    # -- client messages --------------------------------------------------
    async def _on_message(self, raw: str) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            await self._close(1007, "malformed JSON")
            return
        if not isinstance(message, dict) or not isinstance(message.get("header"), dict):
            await self._close(1007, "message without a header object")
            return
        unknown = set(message) - _TOP_LEVEL_FIELDS
        if unknown:
            await self._close(1007, f"unknown top-level field(s): {', '.join(sorted(unknown))}"[:120])
            return
        payload = message.get("payload")
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            await self._close(1007, "payload must be an object")
            return
        header = message["header"]
        action = header.get("action")
        task_id = header.get("task_id")
        if not isinstance(task_id, str) or not task_id:
            await self._fail_unknown(None, "task_id can not be null")
            return
        if action == "run-task":
            await self._run_task(task_id, payload)
        elif action in ("continue-task", "finish-task"):
            task = self.task
            if task is None or task.task_id != task_id:
                if task_id in self._ended_ids:
                    return  # a straggler of a task that already ended here
                await self._fail_unknown(task_id, f"task {task_id} is not running on this connection")
                return
            try:
                if action == "continue-task":
                    await self._continue_task(task, payload)
                else:
                    await self._finish_task(task, payload)
            except TaskError as exc:
                await self._fail(task, exc.code, exc.message)
        else:
            await self._fail_unknown(task_id, f"unsupported action {action!r}")

    def _ended(self, task_id: str) -> None:
        self._ended_ids[task_id] = None
        while len(self._ended_ids) > self.config.max_ended_task_ids:
            self._ended_ids.popitem(last=False)

    async def _fail_unknown(self, task_id: str | None, message: str) -> None:
        try:
            await self._send(failed_message(task_id, "InvalidParameter", message))
        except ConnectionClosed:
            return
        await self._close(1000, "task failed")

    async def _run_task(self, task_id: str, payload: dict[str, Any]) -> None:
        old = self.task
        if old is not None and not old.done:
            old.done = True
            old.record.state = "aborted"
            self._ended(old.task_id)
            await self._stop_producer(old)
        self._disarm()
        context = self.context
        raw_params = payload.get("parameters")
        model = payload.get("model")
        record = TaskRecord(
            task_id=task_id,
            parameters=dict(raw_params) if isinstance(raw_params, dict) else {},
            model=model if isinstance(model, str) else None,
            tag=task_tag(context.next_task_sequence()),
            connection_id=self.id,
        )
        context.tasks.append(record)
        if len(context.tasks) > self.config.max_task_records:
            del context.tasks[0]
        task = TaskRun(record, faults=context.faults.take_for_task())
        self.task = task
        try:
            cloned = context.voices.target_model if context.voices is not None else no_cloned_voices
            params, _ = parse_run_task(payload, cloned_voice_model=cloned)
            task.params = params
            task.voice = VoiceSettings(
                voice=params.voice,
                sample_rate=params.sample_rate,
                volume=params.volume,
                rate=params.rate,
                pitch=params.pitch,
                seed=params.seed,
                tag=record.tag,
                language=params.language,
                voice_languages=params.voice_languages,
            )
            try:
                task.encoder = make_encoder(
                    params.format,
                    params.sample_rate,
                    bit_rate_kbps=params.bit_rate,
                    serial=record.tag,
                )
            except EncoderUnavailableError as exc:
                raise TaskError("InternalError", str(exc)) from None
        except TaskError as exc:
            await self._fail(task, exc.code, exc.message)
            return
        if not await self._before_started(task):
            return
        await self._send(event_message(task_id, "task-started", {}))
        garbage = task.faults.get("garbage")
        if garbage is not None and garbage.payload == "second_task_started":
            task.fired.add("garbage")
            await self._send(event_message(task_id, "task-started", {}))
        task.producer = asyncio.create_task(self._produce(task))
        self._background.add(task.producer)
        task.producer.add_done_callback(self._background.discard)
        self._arm_text(task)
        text = _input(payload).get("text")
        if isinstance(text, str) and text:  # older SDKs sent the first text in run-task
            try:
                await self._add_text(task, text)
            except TaskError as exc:
                await self._fail(task, exc.code, exc.message)

    async def _before_started(self, task: TaskRun) -> bool:
        """Faults at the before_started stage; False when the task is over."""
        faults = task.faults
        drop = faults.get("drop")
        if drop is not None and drop.stage == "before_started":
            task.fired.add("drop")
            task.done = True
            task.record.state = "aborted"
            self._abort_transport()
            return False
        fail = faults.get("fail_task")
        if fail is not None and fail.stage == "before_started":
            task.fired.add("fail_task")
            await self._fail(task, fail.code, fail.message)
            return False
        for kind in ("delay_started", "stall"):
            fault = faults.get(kind)
            if fault is not None and fault.stage == "before_started":
                task.fired.add(kind)
                await asyncio.sleep(fault.seconds)
        garbage = faults.get("garbage")
        if (
            garbage is not None
            and garbage.stage == "before_started"
            and garbage.payload != "second_task_started"
        ):
            task.fired.add("garbage")
            await self._send_garbage(task, garbage)
        return True

    async def _continue_task(self, task: TaskRun, payload: dict[str, Any]) -> None:
        data = _input(payload)
        if task.finishing:
            return
        self._arm_text(task)
        if data.get("flush") is True:
            task.record.flushes += 1
            if self.config.flush == "reject":
                raise invalid(FLUSH_REJECTED)
            if self.config.flush == "honour" and not task.ssml:
                # What the server holds becomes a unit of its own, synthesized now.
                self._enqueue_pieces(task, task.segmenter.flush())
        text = data.get("text")
        if text is None:
            return
        if not isinstance(text, str):
            raise invalid(f"input.text must be a string, got {type(text).__name__}")
        if text:
            await self._add_text(task, text)

    async def _add_text(self, task: TaskRun, text: str) -> None:
        config = self.config
        if task.ssml:
            raise invalid(SSML_LIMIT)
        ssml = is_ssml(text)
        if ssml and (task.params is None or not task.params.enable_ssml or task.got_text):
            raise invalid(SSML_NOT_SUPPORTED)
        count = billable_characters(text)
        if count > config.max_text_characters:
            raise invalid(
                f"text length {count} exceeds the limit of {config.max_text_characters} characters per request"
            )
        if task.characters + count > config.max_task_characters:
            raise invalid(
                f"text length {task.characters + count} exceeds the limit of"
                f" {config.max_task_characters} characters per task"
            )
        if ssml:
            try:
                sentences = ssml_sentences(text)
            except SsmlError as exc:
                raise invalid(str(exc)) from None
            task.ssml = True
            task.got_text = True
            task.characters += count
            task.record.texts.append(text)
            for sentence in sentences:
                if sentence.speakable:
                    self._enqueue(task, sentence)
            return
        task.got_text = True
        task.characters += count
        task.record.texts.append(text)
        self._enqueue_pieces(task, task.segmenter.feed(text))

    def _enqueue_pieces(self, task: TaskRun, pieces: list[str]) -> None:
        for piece in pieces:
            task.consumed += plain_characters(piece)
            sentence = Sentence.plain(piece.strip(), task.consumed)
            if sentence.speakable:
                self._enqueue(task, sentence)

    def _enqueue(self, task: TaskRun, sentence: Sentence) -> None:
        task.record.sentences.append(sentence.text)
        task.queue.put_nowait(_Queued(sentence, self._loop.time()))

    async def _finish_task(self, task: TaskRun, payload: dict[str, Any]) -> None:
        data = _input(payload)
        if data.get("directive") == "cancel":
            await self._cancel_task(task)
            return
        text = data.get("text")
        if isinstance(text, str) and text and not task.finishing:
            await self._add_text(task, text)
        if task.finishing:
            return
        task.finishing = True
        task.record.finish_received = True
        self._disarm()
        if not task.ssml:
            self._enqueue_pieces(task, task.segmenter.flush())
        spoken = "".join(strip_ssml(t) if is_ssml(t) else t for t in task.record.texts)
        if not spoken.strip():
            raise invalid(EMPTY_TEXT)
        task.queue.put_nowait(_FINISH)

    async def _cancel_task(self, task: TaskRun) -> None:
        """The SDK's finish-task with directive=cancel: stop now, report task-finished."""
        task.finishing = True
        task.done = True
        await self._stop_producer(task)
        task.record.state = "aborted"
        await self._send_finished(task, cancelled=True)

    # -- failure ----------------------------------------------------------
    async def _fail(self, task: TaskRun, code: str, message: str) -> None:
        """task-failed, then close the connection (as the service does)."""
        if task.done:
            return
        task.done = True
        record = task.record
        record.state = "failed"
        record.error_code = code
        record.error_message = message
        self._ended(task.task_id)
        await self._stop_producer(task)
        if self.task is task:
            self.task = None
        try:
            await self._send(failed_message(task.task_id, code, message))
        except ConnectionClosed:
            return
        await self._close(1000, "task failed")

    # -- producer ---------------------------------------------------------
    async def _produce(self, task: TaskRun) -> None:
        try:
            await self._produce_sentences(task)
            await self._before_finish(task)
            await self._send_finished(task)
        except TaskError as exc:
            await self._fail(task, exc.code, exc.message)
        except (_Dropped, ConnectionClosed):
            if not task.done:
                task.done = True
                task.record.state = "aborted"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("task %s failed in the embedded server", task.task_id)
            await self._fail(task, "InternalError", f"embedded server error: {type(exc).__name__}: {exc}")

    async def _produce_sentences(self, task: TaskRun) -> None:
        config = self.config
        first = True
        base = 0.0  # pacing clock origin (loop time)
        paced_ms = 0.0  # audio sent since the origin
        while True:
            idle = task.queue.empty()
            item = await task.queue.get()
            if item is _FINISH:
                return
            synthesis = await self._synthesize(task, item.sentence)
            if first:
                base = item.at + config.first_packet_delay_ms / 1000.0
                paced_ms = 0.0
                first = False
            elif idle:
                # Nothing was left to say: synthesis of this unit (a sentence, or a
                # flushed clause) starts from scratch when it became complete, and
                # pays the model's first-packet time again.
                base = item.at + config.first_packet_delay_ms / 1000.0
                paced_ms = 0.0
            paced_ms = await self._send_sentence(task, item.sentence, synthesis, base, paced_ms)

    async def _synthesize(self, task: TaskRun, sentence: Sentence) -> Synthesis:
        engine = self.context.engine
        assert task.voice is not None
        if engine.blocking:
            return await self._loop.run_in_executor(
                self.context.executor, engine.synthesize, sentence, task.voice
            )
        return engine.synthesize(sentence, task.voice)

    def _words_json(self, task: TaskRun, words: list[Word]) -> list[dict[str, Any]]:
        offset = task.audio_ms if self.config.word_time_origin == "task" else 0.0
        return [
            {
                "text": w.text,
                "begin_index": w.begin_index,
                "end_index": w.end_index,
                "begin_time": round(offset + w.begin_time),
                "end_time": round(offset + w.end_time),
            }
            for w in words
        ]

    def _result(self, task: TaskRun, kind: str, index: int, sentence: Sentence, words: list[Any]) -> str:
        sentence_obj: dict[str, Any] = {"words": words}
        output: dict[str, Any] = {"sentence": sentence_obj}
        if not self.config.legacy_events:
            output = {"type": kind, "sentence": {"index": index, "words": words}}
        if kind != "sentence-synthesis":
            output["original_text"] = sentence.text
        payload = {"output": output, "usage": {"characters": sentence.characters}}
        return event_message(task.task_id, "result-generated", payload)

    async def _send_sentence(
        self, task: TaskRun, sentence: Sentence, synthesis: Synthesis, base: float, paced_ms: float
    ) -> float:
        config = self.config
        params = task.params
        encoder = task.encoder
        assert params is not None and encoder is not None
        index = task.sentence_index
        task.sentence_index += 1
        with_words = params.word_timestamps and params.voice_has_word_timestamps
        words = self._words_json(task, synthesis.words) if with_words else []
        placement = config.word_timestamps_in
        if paced_ms == 0:  # first audio of a synthesis run: the first-packet delay
            delay = base - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await self._send(self._result(task, "sentence-begin", index, sentence, []))
        synthesis_event = self._result(task, "sentence-synthesis", index, sentence, [])
        samples = synthesis.samples
        sample_rate = synthesis.sample_rate
        step = max(1, round(sample_rate * config.chunk_ms / 1000))
        total = len(samples)
        record = task.record
        for offset in range(0, total, step):
            chunk = samples[offset : offset + step]
            if task.faults:
                await self._audio_faults(task)
            if config.rtf > 0:
                delay = base + config.rtf * paced_ms / 1000.0 - self._loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            data = encoder.encode(chunk, last=offset + step >= total)
            paced_ms += len(chunk) * 1000.0 / sample_rate
            if data:
                await self._send_pair(synthesis_event, data)
                record.frames_sent += 1
                record.audio_bytes_sent += len(data)
        end_words = words if placement in ("sentence-end", "both") else []
        await self._send(self._result(task, "sentence-end", index, sentence, end_words))
        if with_words and placement in ("task-finished", "task-finished-flat", "both"):
            entry: dict[str, Any] = {"words": words}
            if not config.legacy_events:
                entry["index"] = index
            task.finished_sentences.append(entry)
        task.audio_ms += synthesis.duration_ms
        return paced_ms

    async def _audio_faults(self, task: TaskRun, *, at_end: bool = False) -> None:
        """Audio-stage faults due before the next frame (or, ``at_end``, all still pending)."""
        frames = task.record.frames_sent
        for kind in ("stall", "garbage", "drop", "fail_task"):
            fault = task.faults.get(kind)
            if fault is None or kind in task.fired or fault.stage != "audio":
                continue
            if not at_end and frames < fault.after_frames:
                continue
            task.fired.add(kind)
            if kind == "stall":
                await asyncio.sleep(fault.seconds)
            elif kind == "garbage":
                await self._send_garbage(task, fault)
            elif kind == "drop":
                task.done = True
                task.record.state = "aborted"
                self._abort_transport()
                raise _Dropped()
            else:
                raise TaskError(fault.code, fault.message)

    async def _send_garbage(self, task: TaskRun, fault: Fault) -> None:
        if fault.payload == "malformed_json":
            await self._send('{"header": {"task_id": "' + task.task_id + '", "event": "result-gen')
        elif fault.payload == "unknown_event":
            await self._send(event_message(task.task_id, "task-progress", {"output": {"progress": 0.5}}))
        elif fault.payload == "binary_before_started":
            await self._send(b"\x00garbage-before-task-started")
        else:
            await self._send(event_message(task.task_id, "task-started", {}))

    async def _before_finish(self, task: TaskRun) -> None:
        await self._audio_faults(task, at_end=True)
        stall = task.faults.get("stall")
        if stall is not None and stall.stage == "before_finished" and "stall" not in task.fired:
            task.fired.add("stall")
            await asyncio.sleep(stall.seconds)
        drop = task.faults.get("drop")
        if drop is not None and drop.stage == "during_finish" and "drop" not in task.fired:
            task.fired.add("drop")
            task.done = True
            task.record.state = "aborted"
            self._abort_transport()
            raise _Dropped()

    async def _send_finished(self, task: TaskRun, *, cancelled: bool = False) -> None:
        record = task.record
        record.request_uuid = str(uuid.uuid4())
        record.characters = task.characters
        output: dict[str, Any] = {}
        if task.finished_sentences and not cancelled:
            if self.config.word_timestamps_in == "task-finished-flat":
                # One list of the task's words, no index: times as the origin says.
                output["sentence"] = {"words": [w for s in task.finished_sentences for w in s["words"]]}
            else:
                output["sentences"] = task.finished_sentences
        payload = {"output": output, "usage": {"characters": task.characters}}
        message = event_message(task.task_id, "task-finished", payload, request_uuid=record.request_uuid)
        if not cancelled:
            task.done = True
            record.state = "finished"
        self._ended(task.task_id)
        if self.task is task:
            self.task = None
            self._arm_idle()
        await self._send(message)


def _input(payload: dict[str, Any]) -> dict[str, Any]:
    data = payload.get("input")
    return data if isinstance(data, dict) else {}
