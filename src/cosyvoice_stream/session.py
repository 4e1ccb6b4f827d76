"""One synthesis task end to end, sans-I/O: protocol, audio, word times, metrics.

``TaskSession`` is what the asyncio and synchronous front ends drive. They
move bytes and tell it the time (``now``, seconds on any monotonic clock);
it returns the stream events the caller sees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .audio import PcmConverter, pcm_duration
from .errors import CosyVoiceError, ProtocolError
from .events import AudioChunk, StreamEvent, SynthesisComplete, TaskMetrics, WordTimestamps
from .options import SynthesisOptions
from .protocol import (
    AudioReceived,
    ProtocolEvent,
    SentenceBegin,
    SentenceEnd,
    TaskFailed,
    TaskFinished,
    TaskProtocol,
    TaskState,
    UsageUpdated,
    WordsReceived,
)
from .timestamps import WordTimeline


@dataclass(frozen=True)
class Received:
    """What one frame from the server meant.

    ``protocol_events``: the protocol's typed events (raw messages where the
    SDK's contract hands them on); empty when the frame is not progress of
    this task (another task's event, an unknown event). ``stream_events``:
    what the caller of a stream sees.
    """

    protocol_events: tuple[ProtocolEvent, ...]
    stream_events: list[StreamEvent]

    @property
    def progress(self) -> bool:
        """The frame moved this task on: only then may it re-arm a deadline."""
        return bool(self.protocol_events)


class TaskSession:
    """A task's protocol plus the conversion of what it receives into stream events.

    ``output_rate`` is the rate the caller wants; the options' ``sample_rate``
    is what the service is asked for. PCM is converted (and resampled when
    they differ); other formats pass through untouched.
    """

    def __init__(
        self,
        options: SynthesisOptions,
        *,
        output_rate: int | None = None,
        ssml: bool = False,
        task_id: str | None = None,
    ) -> None:
        self.protocol = TaskProtocol(options, task_id=task_id, ssml=ssml)
        self.options = options
        self.output_rate = output_rate or options.sample_rate
        self._converter = (
            PcmConverter(options.sample_rate, self.output_rate) if options.format == "pcm" else None
        )
        self._timeline = WordTimeline()
        self._service_audio_bytes = 0
        self._audio_bytes = 0
        self._first_text_at: float | None = None
        self._first_audio_at: float | None = None
        self._requested_at: float | None = None
        self._started_at: float | None = None
        self.metrics = TaskMetrics(
            task_id=self.protocol.task_id,
            model=options.model,
            voice=options.voice,
            sample_rate=self.output_rate,
            resampled=bool(self._converter and self._converter.resampling),
        )

    @property
    def task_id(self) -> str:
        return self.protocol.task_id

    @property
    def error(self) -> CosyVoiceError | None:
        return self.protocol.error

    def _service_audio_ms(self) -> float:
        if self.options.format != "pcm":
            return 0.0
        return pcm_duration(self._service_audio_bytes, self.options.sample_rate) * 1000

    # -- caller side --------------------------------------------------------
    def set_output_rate(self, output_rate: int) -> None:
        """Change the delivered rate (before any audio arrived)."""
        if output_rate == self.output_rate:
            return
        self.output_rate = output_rate
        if self.options.format == "pcm":
            self._converter = PcmConverter(self.options.sample_rate, output_rate)
        self.metrics = replace(
            self.metrics,
            sample_rate=output_rate,
            resampled=bool(self._converter and self._converter.resampling),
        )

    def start_metrics(
        self,
        *,
        requested_at: float,
        connect_time: float | None,
        reused: bool,
        acquire_time: float | None = None,
    ) -> None:
        """Record when the task was asked for and how its connection was obtained."""
        self._requested_at = requested_at
        self.metrics = replace(
            self.metrics, connect_time=connect_time, connection_reused=reused, acquire_time=acquire_time
        )

    def start(self) -> None:
        """Queue run-task."""
        self.protocol.start()

    def send_text(self, text: str, now: float) -> None:
        self.protocol.send_text(text)
        self._timeline.add_source_text(text)
        if self._first_text_at is None and text.strip():
            self._first_text_at = now

    def flush(self) -> None:
        """Queue the protocol's flush (the task goes on)."""
        self.protocol.flush()

    def finish(self) -> None:
        self.protocol.finish()

    def data_to_send(self) -> list[str]:
        return self.protocol.data_to_send()

    # -- network side -------------------------------------------------------
    def receive_text(self, data: str | bytes, now: float) -> list[StreamEvent]:
        return self._translate(self.protocol.receive_text(data), now)

    def receive_bytes(self, data: bytes, now: float) -> list[StreamEvent]:
        return self._translate(self.protocol.receive_bytes(data), now)

    def receive_frame(self, data: str | bytes, now: float, *, text: bool) -> Received:
        """A text (``text=True``) or binary frame, with the protocol events behind it."""
        if text:
            events = self.protocol.receive_message(data)
        else:
            events = self.protocol.receive_bytes(data.encode() if isinstance(data, str) else data)
        return Received(tuple(events), self._translate(events, now))

    def _translate(self, events: list[ProtocolEvent], now: float) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        for event in events:
            if isinstance(event, AudioReceived):
                chunk = self._audio(event.data, now)
                if chunk:
                    out.append(AudioChunk(audio=chunk, sample_rate=self.output_rate, task_id=self.task_id))
            elif isinstance(event, SentenceBegin):
                self._timeline.sentence_began(event.index, self._service_audio_ms())
            elif isinstance(event, SentenceEnd):
                self._timeline.sentence_ended(event.index, self._service_audio_ms())
            elif isinstance(event, WordsReceived):
                words = self._timeline.add_words(event.index, event.words)
                last_end = max((w.end for w in words), default=0.0)
                if self._beyond_audio(last_end):
                    self._fail(
                        ProtocolError(
                            f"the server sent word times up to {last_end:.3f} s for"
                            f" {self._service_audio_ms() / 1000:.3f} s of audio",
                            task_id=self.task_id,
                        )
                    )
                    break
                if words:
                    out.append(WordTimestamps(words=tuple(words), task_id=self.task_id))
            elif isinstance(event, UsageUpdated):
                self.metrics = replace(self.metrics, server_characters=event.characters)
            elif isinstance(event, TaskFinished):
                if self._converter is not None:
                    tail = self._converter.flush()
                    if tail:
                        self._audio_bytes += len(tail)
                        out.append(AudioChunk(audio=tail, sample_rate=self.output_rate, task_id=self.task_id))
                self._finalise_metrics(request_uuid=event.request_uuid)
                out.append(SynthesisComplete(metrics=self.metrics))
            elif isinstance(event, TaskFailed):
                self._finalise_metrics(request_uuid=self.protocol.request_uuid)
        return out

    #: How far (s) a word may end beyond the audio received: words come after their
    #: audio, so anything further is the server contradicting itself.
    WORD_TIME_MARGIN = 1.0

    def _beyond_audio(self, end: float) -> bool:
        if self.options.format != "pcm":  # the duration of encoded audio is not known here
            return False
        return end > self._service_audio_ms() / 1000 + self.WORD_TIME_MARGIN

    def _fail(self, error: CosyVoiceError) -> None:
        self.protocol.state = TaskState.FAILED
        self.protocol.error = error

    def _audio(self, data: bytes, now: float) -> bytes:
        if self._first_audio_at is None:
            self._first_audio_at = now
        self._service_audio_bytes += len(data)
        chunk = self._converter.convert(data) if self._converter is not None else data
        self._audio_bytes += len(chunk)
        return chunk

    def _finalise_metrics(self, *, request_uuid: str | None) -> None:
        ttfa = fpd = None
        if self._first_audio_at is not None:
            if self._first_text_at is not None:
                ttfa = max(0.0, self._first_audio_at - self._first_text_at)
            if self._requested_at is not None:
                fpd = self._first_audio_at - self._requested_at
        duration = pcm_duration(self._audio_bytes, self.output_rate) if self.options.format == "pcm" else 0.0
        self.metrics = replace(
            self.metrics,
            request_uuid=request_uuid,
            time_to_first_audio=ttfa,
            first_package_delay=fpd,
            audio_duration=duration,
            audio_bytes=self._audio_bytes,
            estimated_characters=self.protocol.characters_sent,
        )

    def finalise(self) -> TaskMetrics:
        """Metrics as they stand (for a task that failed or was cancelled)."""
        self._finalise_metrics(request_uuid=self.protocol.request_uuid)
        return self.metrics
