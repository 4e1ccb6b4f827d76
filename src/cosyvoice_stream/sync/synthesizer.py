"""``SpeechSynthesizer``: the official SDK's synchronous API on this package's core."""

from __future__ import annotations

import json
import logging
import re
import selectors
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import websocket

from ..aio.connection import USER_AGENT, Timeouts
from ..endpoint import Credentials, resolve_url
from ..errors import ConnectionLostError, CosyVoiceError, InvalidParameterError, TaskCancelledError
from ..options import AudioFormat, SynthesisOptions
from ..protocol import check_fragment, handshake_headers, new_task_id
from ..redact import redact
from ..session import TaskSession
from ..text import check_text
from ._run import Liveness, TaskRun, open_websocket
from .callback import ResultCallback
from .errors import InvalidTaskError, WaitTimeoutError, as_request_failure

if TYPE_CHECKING:
    from .pool import SpeechSynthesizerObjectPool

logger = logging.getLogger("cosyvoice_stream.sync")

#: ``additional_params`` keys (wire names) that are fields of ``SynthesisOptions``.
#: They are validated like the constructor arguments; any other key is sent as is.
OPTION_KEYS: dict[str, str] = {
    "volume": "volume",
    "rate": "speech_rate",
    "pitch": "pitch_rate",
    "seed": "seed",
    "format": "format",
    "sample_rate": "sample_rate",
    "bit_rate": "bit_rate",
    "word_timestamp_enabled": "word_timestamp_enabled",
    "language_hints": "language_hints",
    "instruction": "instruction",
    "enable_aigc_tag": "enable_aigc_tag",
    "aigc_propagator": "aigc_propagator",
    "aigc_propagate_id": "aigc_propagate_id",
}
_WORKSPACE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,62}\Z")
_HEADER_NAME = re.compile(r"\A[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_CALLBACK_METHODS = ("on_open", "on_event", "on_data", "on_complete", "on_error", "on_close")


def _seconds(name: str, millis: object) -> float | None:
    """A timeout in ms as seconds; None or 0 mean no limit (as in the SDK).

    A negative value is refused: the SDK reads it as "no limit", which is
    never what a negative number in a program meant.
    """
    if millis is None:
        return None
    if isinstance(millis, bool) or not isinstance(millis, (int, float)) or millis != millis:
        raise InvalidParameterError(f"{name}={millis!r} is invalid: expected milliseconds", parameter=name)
    if millis < 0:
        raise InvalidParameterError(
            f"{name}={millis!r} is invalid: expected milliseconds >= 0 (0 or None: no limit)", parameter=name
        )
    return millis / 1000 if millis > 0 else None


def _usable(ws: websocket.WebSocket) -> bool:
    """An idle connection that is still open and has nothing pending (a close, a stray frame)."""
    sock = ws.sock
    if not ws.connected or sock is None:
        return False
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(sock, selectors.EVENT_READ)
            return not selector.select(0)
    except (OSError, ValueError):
        return False


@dataclass(eq=False)
class WarmConnection:
    """A connection of the object pool, possibly holding a task started ahead of time.

    ``primed``: a task whose run-task was sent (its task-started may still be
    on its way) for exactly one set of parameters; ``primed_at``: when, since
    the service's text window (``Timeouts.server_text``) runs from then.
    """

    ws: websocket.WebSocket
    since: float  # when it became idle
    primed: TaskSession | None = None
    primed_at: float = 0.0

    def fits(self, options: SynthesisOptions, ssml: bool) -> bool:
        """Whether the primed task is the run-task these parameters would send."""
        primed = self.primed
        return primed is not None and primed.options == options and primed.protocol.ssml == ssml


def close_quietly(ws: websocket.WebSocket, timeout: float = 2.0) -> None:
    """Close an idle connection politely (bounded), then drop it."""
    try:
        if ws.connected:
            ws.close(timeout=timeout)
    except Exception:  # closing is best effort
        logger.debug("closing an idle connection failed", exc_info=True)
    finally:
        try:
            ws.shutdown()
        except Exception:
            logger.debug("dropping an idle connection failed", exc_info=True)


def _setting(name: str) -> Any:
    """A module attribute of ``cosyvoice_stream.sync`` (``api_key``, ``base_websocket_api_url``)."""
    module = sys.modules.get(__package__ or "cosyvoice_stream.sync")
    return getattr(module, name, None)


def build_options(
    model: str,
    voice: str,
    format: AudioFormat,
    *,
    volume: int = 50,
    speech_rate: float = 1.0,
    pitch_rate: float = 1.0,
    seed: int = 0,
    synthesis_type: int = 0,
    instruction: str | None = None,
    language_hints: Sequence[str] | None = None,
    hot_fix: Mapping[str, Any] | None = None,
    additional_params: Mapping[str, Any] | None = None,
) -> tuple[SynthesisOptions, bool]:
    """Validated options for the SDK's constructor arguments, and whether ``enable_ssml`` was asked for.

    As in the SDK, ``additional_params`` win over the arguments, except a
    non-None ``instruction`` / ``language_hints`` argument.
    """
    if not isinstance(format, AudioFormat):
        raise InvalidParameterError(
            f"format={format!r} is invalid: expected an AudioFormat member such as"
            " AudioFormat.PCM_22050HZ_MONO_16BIT",
            parameter="format",
        )
    if additional_params is not None and not isinstance(additional_params, Mapping):
        raise InvalidParameterError(
            f"additional_params must be a dict, got {type(additional_params).__name__}",
            parameter="additional_params",
        )
    extra: dict[str, Any] = dict(additional_params or {})
    enable_ssml = extra.pop("enable_ssml", False)
    if not isinstance(enable_ssml, bool):
        raise InvalidParameterError(
            f"additional_params['enable_ssml']={enable_ssml!r} is invalid: expected True or False",
            parameter="enable_ssml",
        )
    if isinstance(synthesis_type, bool) or not isinstance(synthesis_type, int):
        raise InvalidParameterError(
            f"synthesis_type={synthesis_type!r} is invalid: expected an int", parameter="synthesis_type"
        )
    if synthesis_type:
        extra.setdefault("type", synthesis_type)
    if hot_fix is not None:
        if not isinstance(hot_fix, Mapping):
            to_dict = getattr(hot_fix, "to_dict", None)
            if not callable(to_dict):
                raise InvalidParameterError(
                    "hot_fix is invalid: expected a dict such as {'pronunciation': [...], 'replace': [...]}",
                    parameter="hot_fix",
                )
            hot_fix = to_dict()
        extra["hot_fix"] = dict(hot_fix)
    fields: dict[str, Any] = {
        "model": model,
        "voice": voice,
        "format": format.wire_format,
        "sample_rate": format.wire_sample_rate,
        "volume": volume,
        "speech_rate": speech_rate,
        "pitch_rate": pitch_rate,
        "seed": seed,
    }
    if format.wire_format == "opus":
        fields["bit_rate"] = format.bit_rate
    for key, field_name in OPTION_KEYS.items():
        if key in extra:
            fields[field_name] = extra.pop(key)
    if instruction is not None:
        fields["instruction"] = instruction
    if language_hints is not None:
        fields["language_hints"] = language_hints
    return SynthesisOptions(**fields, additional_params=extra), enable_ssml


class SpeechSynthesizer:
    """The official SDK's ``SpeechSynthesizer``, on this package's protocol core.

    Arguments are the SDK's (same order), validated here with errors that
    name the parameter. Extra keyword-only arguments: ``api_key`` (else the
    module attribute ``cosyvoice_stream.sync.api_key``, else
    ``DASHSCOPE_API_KEY``), ``timeouts`` (client deadlines, see
    ``cosyvoice_stream.Timeouts``), ``ping_interval`` / ``ping_timeout``
    (seconds; a connection silent that long is pinged, and declared dead when
    the pong does not come; ``ping_interval=None`` disables pings).

    The endpoint is ``url``, else the module attribute
    ``base_websocket_api_url``, else ``DASHSCOPE_WEBSOCKET_BASE_URL``, else the
    region settings; ``wss://`` is required except for loopback hosts. Key and
    URL are read here, when the synthesizer is created.

    Each task runs on its own connection (as in the SDK). As in the SDK, a
    synthesizer runs one streaming task: ``streaming_call()`` after that task
    ended (completed, cancelled or failed) raises ``InvalidTaskError``. Unlike
    the SDK (whose closed socket raises ``ConnectionError``), ``call()`` may
    run again once the previous task is over.
    """

    def __init__(
        self,
        model: str,
        voice: str,
        format: AudioFormat = AudioFormat.DEFAULT,
        volume: int = 50,
        speech_rate: float = 1.0,
        pitch_rate: float = 1.0,
        seed: int = 0,
        synthesis_type: int = 0,
        instruction: str | None = None,
        language_hints: Sequence[str] | None = None,
        headers: Mapping[str, str] | None = None,
        callback: ResultCallback | None = None,
        workspace: str | None = None,
        url: str | None = None,
        hot_fix: Mapping[str, Any] | None = None,
        additional_params: Mapping[str, Any] | None = None,
        *,
        api_key: str | None = None,
        timeouts: Timeouts | None = None,
        ping_interval: float | None = 10.0,
        ping_timeout: float = 10.0,
    ) -> None:
        self._options, self._enable_ssml = build_options(
            model,
            voice,
            format,
            volume=volume,
            speech_rate=speech_rate,
            pitch_rate=pitch_rate,
            seed=seed,
            synthesis_type=synthesis_type,
            instruction=instruction,
            language_hints=language_hints,
            hot_fix=hot_fix,
            additional_params=additional_params,
        )
        self.model = model
        self.voice = voice
        self.format = format
        if callback is not None and not any(hasattr(callback, m) for m in _CALLBACK_METHODS):
            raise InvalidParameterError(
                f"callback={type(callback).__name__} is invalid: expected a ResultCallback",
                parameter="callback",
            )
        self.callback = callback
        if workspace is not None and not (isinstance(workspace, str) and _WORKSPACE.match(workspace)):
            raise InvalidParameterError(
                "workspace is invalid: expected letters, digits, '-' or '_'", parameter="workspace"
            )
        self.workspace = workspace
        if url is None:
            url = _setting("base_websocket_api_url")
        if isinstance(url, str) and "{workspace_id}" in url:
            if workspace is None:
                raise InvalidParameterError(
                    "the url contains '{workspace_id}' but no workspace= was given", parameter="url"
                )
            url = url.replace("{workspace_id}", workspace)
        self.url = resolve_url(url, workspace=workspace)
        if api_key is None:
            api_key = _setting("api_key")
        self._credentials = Credentials.resolve(api_key, None, self.url)
        self._headers = self._check_headers(headers)
        self._timeouts = timeouts if timeouts is not None else Timeouts()
        if not isinstance(self._timeouts, Timeouts):
            raise InvalidParameterError("timeouts must be a Timeouts instance", parameter="timeouts")
        for name, value in (("ping_interval", ping_interval), ("ping_timeout", ping_timeout)):
            if value is None and name == "ping_interval":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
                raise InvalidParameterError(
                    f"{name}={value!r} is invalid: expected seconds in (0, 3600]", parameter=name
                )
        self._liveness = Liveness(ping_interval, ping_timeout)
        self._lock = threading.Lock()
        self._run: TaskRun | None = None
        self._consumed = True  # the current run was ended by the caller (complete/cancel/call)
        self._completing: TaskRun | None = None  # ended by async_streaming_complete(), still cancellable
        self._next_task_id = new_task_id()
        # As in the SDK, streaming_call() starts one task per synthesizer (per borrow):
        # once that task is over, more streaming_call()s raise InvalidTask.
        self._streamed = False
        # Set by SpeechSynthesizerObjectPool.borrow_synthesizer(): the pool it came from and a
        # warm connection for its next task (a cleanly finished task leaves its connection here).
        self._pool: SpeechSynthesizerObjectPool | None = None
        self._warm: WarmConnection | None = None
        # The parameters of its first clean pooled task, call() or streaming: what the next
        # borrower most likely starts with, so the pool primes the connection with them.
        self._first_key: tuple[SynthesisOptions, bool] | None = None

    @staticmethod
    def _check_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
        if headers is None:
            return {}
        if not isinstance(headers, Mapping):
            raise InvalidParameterError("headers must be a dict of str to str", parameter="headers")
        for name, value in headers.items():
            if not (isinstance(name, str) and _HEADER_NAME.match(name)) or not isinstance(value, str):
                raise InvalidParameterError(
                    f"headers: {name!r} is not a valid header name with a str value", parameter="headers"
                )
            if any(c in value for c in "\r\n\x00"):
                raise InvalidParameterError(
                    f"headers: the value of {name!r} contains CR, LF or NUL", parameter="headers"
                )
        return dict(headers)

    def __repr__(self) -> str:
        run = self._run
        state = "idle" if run is None else ("done" if run.done.is_set() else "running")
        return (
            f"SpeechSynthesizer(model={self.model!r}, voice={self.voice!r}, format={self.format.name},"
            f" url={self.url!r}, credentials={self._credentials!r}, task={state})"
        )

    @property
    def options(self) -> SynthesisOptions:
        """The validated request parameters."""
        return self._options

    # -- internals ------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return redact(text, self._credentials.secret_values)

    def _handshake_headers(self) -> dict[str, str]:
        key = self._credentials.secret_values[0] if self._credentials.secret_values else None
        ours = (
            handshake_headers(key, workspace=self.workspace, user_agent=USER_AGENT)
            if key
            else {"User-Agent": USER_AGENT}
        )
        if not key and self.workspace:
            ours["X-DashScope-WorkSpace"] = self.workspace
        lowered = {name.lower() for name in self._headers}
        merged = {name: value for name, value in ours.items() if name.lower() not in lowered}
        merged.update(self._headers)  # the caller's headers win, as in the SDK
        return merged

    def _running(self) -> TaskRun | None:
        """The run the caller has not ended yet, if any."""
        return None if self._consumed else self._run

    def _reclaim(self) -> None:
        """Keep the connection of a cleanly finished pooled task for the next one."""
        run = self._run
        if run is not None and run.done.is_set() and run.reusable:
            run.reusable = False
            if self._first_key is None:
                self._first_key = (run.session.options, run.session.protocol.ssml)
            if self._warm is None and self._pool is not None:
                self._warm = WarmConnection(run.ws, time.monotonic())
            else:
                close_quietly(run.ws, self._timeouts.close)

    def _connection(
        self, limit_at: float | None, ssml: bool
    ) -> tuple[websocket.WebSocket, bool, TaskSession | None]:
        """A warm connection when there is one, else a new one; whether reused; its started task if any.

        A task started ahead of time is used only when it is exactly the task
        these parameters would start and young enough to leave the caller
        most of the service's text window; any other goes back to the pool,
        which ends it off this path, and another connection is used.
        """
        self._reclaim()
        pool = self._pool
        if pool is not None:
            warm = pool._claim(self)  # the pool may take back a primed task about to age
        else:
            warm, self._warm = self._warm, None
        for _ in range(2):  # our own connection, then one more from the pool
            if warm is None:
                break
            if warm.primed is not None:
                fresh = pool is not None and time.monotonic() - warm.primed_at < pool.primed_ttl
                if fresh and warm.fits(self._options, ssml) and warm.ws.connected:
                    return warm.ws, True, warm.primed
                if self._next_task_id == warm.primed.task_id:
                    self._next_task_id = new_task_id()  # that task id is being ended elsewhere
                if pool is not None:
                    pool._retire(warm)
                else:
                    close_quietly(warm.ws, self._timeouts.close)
            elif _usable(warm.ws):
                return warm.ws, True, None
            else:
                close_quietly(warm.ws, self._timeouts.close)
            warm = pool._take(self._options, ssml) if pool is not None else None
        try:
            ws = open_websocket(
                self.url, self._handshake_headers(), self._timeouts, self._redact, limit_at=limit_at
            )
        except CosyVoiceError as error:
            raise as_request_failure(error) from None
        return ws, False, None

    def _start(self, *, ssml: bool, first_text: str, limit: float | None = None) -> TaskRun:
        """Connect, run-task, wait for task-started (start errors are raised here)."""
        check_fragment(first_text, ssml=ssml, characters_sent=0, messages_sent=0)  # before connecting
        with self._lock:
            if self._running() is not None:
                raise InvalidTaskError(
                    "a task is already running on this synthesizer: end it with streaming_complete()"
                    " or streaming_cancel() first"
                )
            requested_at = time.monotonic()
            deadline = requested_at + limit if limit is not None else None
            # A pooled connection may have died while idle: then the task starts once more on a
            # new one (nothing reached the caller yet).
            for attempt in range(2):
                ws, reused, primed = self._connection(deadline, ssml)
                session = primed or TaskSession(self._options, ssml=ssml, task_id=self._next_task_id)
                self._next_task_id = new_task_id()
                session.start_metrics(
                    requested_at=requested_at,
                    connect_time=0.0 if reused else time.monotonic() - requested_at,
                    reused=reused,
                )
                run = TaskRun(
                    ws,
                    session,
                    callback=self.callback,
                    timeouts=self._timeouts,
                    liveness=self._liveness,
                    redact=self._redact,
                    requested_at=requested_at,
                    deadline=deadline,
                    keep_open=self._pool is not None,
                )
                self._run, self._consumed, self._completing = run, False, None
                run.start()
                run.started.wait()  # bounded: the reader gives up after timeouts.start
                if run.task_started:
                    break
                # The task never started: nothing was delivered to the callback, the caller is told here.
                self._consumed = True
                run.closed.wait()  # immediate: the reader has ended
                error = run.error or TaskCancelledError(
                    "the task ended before it started", task_id=run.task_id
                )
                if not (reused and attempt == 0 and isinstance(error, ConnectionLostError)):
                    raise error
        if threading.current_thread() is not run.dispatcher:
            run.opened.wait()  # on_open delivered before the first text, as in the SDK
        return run

    def _wait(self, run: TaskRun, timeout: float | None, what: str) -> None:
        """Wait until every callback of ``run`` was delivered (or its outcome, without callback)."""
        if threading.current_thread() is run.dispatcher:
            return  # called from a callback: waiting for the callbacks would deadlock
        if not run.closed.wait(timeout):
            error = WaitTimeoutError(
                f"{what} did not complete within {timeout * 1000 if timeout else 0:.0f} ms;"
                " the task was cancelled",
                code="WaitTimeout",
                task_id=run.task_id,
            )
            run.cancel(error)
            raise error

    # -- the SDK's API --------------------------------------------------------
    def call(self, text: str, timeout_millis: int | None = None) -> bytes | None:
        """Synthesize the whole ``text`` (plain or SSML, at most 2,000 characters).

        Without a callback: block until done and return the audio; a failure
        raises its ``CosyVoiceError`` (never partial audio). With a callback:
        return None once the text is sent; results go to the callback.
        ``timeout_millis`` (None or 0: no limit) is a wall-clock bound on the
        whole task, connection included; running out is a ``WaitTimeoutError``
        (raised, or given to ``on_error``).
        """
        limit = _seconds("timeout_millis", timeout_millis)
        check_text(text)
        if not text.strip():
            raise InvalidParameterError("text is empty or whitespace only", parameter="text")
        run = self._start(ssml=True, first_text=text, limit=limit)
        self._consumed = True
        try:
            run.send_text(text)
            run.finish()
        except CosyVoiceError:
            # The connection failed after task-started: the reader reports it
            # (on_error with a callback, run.error without).
            if self.callback is None:
                self._wait(run, None, "call()")
                raise run.error or as_request_failure(
                    ConnectionLostError("the task ended before its text was sent", task_id=run.task_id)
                ) from None
        if self.callback is not None:
            return None
        self._wait(run, None, "call()")  # bounded: the reader enforces timeout_millis and its deadlines
        if run.error is not None:
            raise run.error
        return bytes(run.audio)

    def streaming_call(self, text: str) -> None:
        """Send a fragment of text; the first call starts the task (and waits for task-started).

        The server synthesizes complete sentences at once and holds the rest
        until more text, ``streaming_flush()`` or ``streaming_complete()``.
        """
        if self._completing is not None:
            raise InvalidTaskError("streaming_call() after async_streaming_complete(): the task is ending")
        run = self._running()
        if run is None:
            if self._streamed:
                raise InvalidTaskError(
                    "streaming_call() after the streaming task ended (completed, cancelled or failed):"
                    " as in the SDK, a synthesizer runs one streaming task; create another synthesizer"
                    " (or borrow one from the pool)"
                )
            run = self._start(ssml=self._enable_ssml, first_text=text)
            # Once started (the SDK marks it before: a task that could not start cannot be
            # retried there; here the failed streaming_call() may be repeated).
            self._streamed = True
        run.send_text(text)

    def streaming_flush(self) -> None:
        """Make the server synthesize the text it holds now, without ending the task.

        Sends what the SDK sends (a continue-task with ``input.flush = true``);
        the audio follows through the callback (or is collected) and more
        ``streaming_call()`` may come. Only while a task runs.
        """
        if self._completing is not None:
            raise InvalidTaskError("streaming_flush() after async_streaming_complete(): the task is ending")
        run = self._running()
        if run is None:
            raise InvalidTaskError("streaming_flush() without a running task: call streaming_call() first")
        run.flush()

    def streaming_complete(self, complete_timeout_millis: int | None = 600000) -> bytes | None:
        """No more text: wait until the task ends and every callback was delivered.

        Without a callback a failure raises its ``CosyVoiceError`` and the
        audio is returned; with a callback the outcome went to
        ``on_complete``/``on_error`` and None is returned. A timeout (None or 0:
        none) cancels the task and raises ``WaitTimeoutError``; after it only
        ``on_close`` is still called.
        """
        timeout = _seconds("complete_timeout_millis", complete_timeout_millis)
        if self._completing is not None:
            raise InvalidTaskError(
                "streaming_complete() after async_streaming_complete(): the task is ending"
            )
        run = self._running()
        if run is None:
            raise InvalidTaskError("streaming_complete() without a running task: call streaming_call() first")
        self._consumed = True
        if not run.done.is_set():
            try:
                run.finish()
            except CosyVoiceError:
                pass  # the reader has or will have the outcome
        self._wait(run, timeout, "streaming_complete()")
        if self.callback is not None:
            return None
        if run.error is not None:
            raise run.error
        return bytes(run.audio)

    def async_streaming_complete(self, complete_timeout_millis: int | None = 600000) -> None:
        """No more text; return at once. ``on_complete`` (or ``on_error``), then ``on_close``, follow.

        ``complete_timeout_millis`` (None or 0: none) bounds the rest of the
        task: running out cancels it and ``on_error`` receives a
        ``WaitTimeoutError``. ``streaming_cancel()`` may still stop it.
        """
        timeout = _seconds("complete_timeout_millis", complete_timeout_millis)
        if self._completing is not None:
            raise InvalidTaskError("async_streaming_complete() was already called for this task")
        run = self._running()
        if run is None:
            raise InvalidTaskError(
                "async_streaming_complete() without a running task: call streaming_call() first"
            )
        self._consumed, self._completing = True, run
        if timeout is not None:
            with run.lock:
                at = time.monotonic() + timeout
                run.deadline = at if run.deadline is None else min(run.deadline, at)
        if not run.done.is_set():
            try:
                run.finish()  # also wakes the reader, which picks up the new deadline
            except CosyVoiceError:
                pass  # the reader has or will have the outcome

    def streaming_cancel(self, complete_timeout_millis: int | None = 10000) -> None:
        """Stop the task now, as the SDK does: send the cancel directive and wait for the end.

        From the call on no audio and no ``on_event`` is delivered; the task
        ends with ``on_complete`` and ``on_close`` (``on_error`` only if the
        server failed it). When the server has not ended the task within
        ``complete_timeout_millis`` (None or 0: the reader's own deadlines), the
        connection is cut instead. Raises ``InvalidTaskError`` when no task is
        running (never started, already completed or cancelled).
        """
        timeout = _seconds("complete_timeout_millis", complete_timeout_millis)
        run = self._running()
        if run is None and self._completing is not None and not self._completing.done.is_set():
            run = self._completing
        if run is None:
            raise InvalidTaskError(
                "streaming_cancel() without a running task: the task was not started, or has ended"
            )
        self._consumed, self._completing = True, None
        started = time.monotonic()
        run.cancel_directive()
        if not run.done.wait(timeout):
            logger.warning(
                "the service did not end the cancelled task within %.0f ms; cutting the connection",
                (timeout or 0) * 1000,
            )
            run.abort(TaskCancelledError("the task was cancelled", task_id=run.task_id))
            run.done.wait(self._timeouts.close)  # the reader ends at once once the socket is cut
        if threading.current_thread() is not run.dispatcher:
            # on_complete and on_close are delivered before this returns (stale audio was dropped).
            left = None if timeout is None else max(timeout - (time.monotonic() - started), 0.0)
            run.closed.wait(self._timeouts.close if left is None else max(left, self._timeouts.close))

    def close(self) -> None:
        """Stop the running task, if any (the SDK's ``close``); never raises."""
        run = self._running() or self._completing
        if run is not None and not run.done.is_set():
            self._consumed, self._completing = True, None
            run.cancel()
            if threading.current_thread() is not run.dispatcher:
                run.closed.wait(self._timeouts.close)
        self._reclaim()
        # A pooled synthesizer's connection goes back with return_synthesizer().
        if self._pool is None and self._warm is not None:
            warm, self._warm = self._warm, None
            close_quietly(warm.ws, self._timeouts.close)

    def get_last_request_id(self) -> str:
        """The task id of the last (or current, or next) task."""
        run = self._run
        return run.task_id if run is not None else self._next_task_id

    def get_first_package_delay(self) -> float:
        """Milliseconds from the start of the task (connection included) to the first audio; -1 if none yet."""
        run = self._run
        if run is None:
            return -1.0
        delay = run.session.metrics.first_package_delay
        if delay is not None:
            return delay * 1000
        if run.first_audio_at is not None:
            return (run.first_audio_at - run.requested_at) * 1000
        return -1.0

    def get_response(self) -> dict[str, Any] | None:
        """The last JSON message of the server, as a dict (None before any)."""
        run = self._run
        if run is None or run.last_message is None:
            return None
        try:
            value = json.loads(run.last_message)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def get_last_error(self) -> CosyVoiceError | None:
        """The error that ended the last task, if it failed."""
        run = self._run
        return None if run is None else run.error or run.cancel_reason
