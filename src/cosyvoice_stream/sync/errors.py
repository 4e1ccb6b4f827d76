"""Errors of the synchronous SDK-style API.

``InvalidTaskError`` and ``WaitTimeoutError`` are ``CosyVoiceError`` s.
``RequestFailure`` is the SDK's class of the same name
(``dashscope.common.error.RequestFailure``): every task failure the sync API
raises is an instance of it *and* of the mapped ``CosyVoiceError`` subclass,
so ``except RequestFailure:`` handlers written for the SDK and
``except ServerError:`` handlers written for this package both match.
"""

from __future__ import annotations

import threading
from typing import Any

from ..errors import ClientTimeoutError, CosyVoiceError, InvalidParameterError, TaskCancelledError
from ..redact import MAX_MESSAGE, bound, redact

#: The SDK's ``http_code`` of failures reported over the WebSocket (``WEBSOCKET_ERROR_CODE``).
WEBSOCKET_ERROR_CODE = 44


class InvalidTaskError(CosyVoiceError, RuntimeError):
    """A method was called in a state that does not allow it.

    For example ``streaming_complete()`` without ``streaming_call()``, or
    ``call()`` while a task of the same synthesizer is still running (the
    SDK's ``InvalidTask``).
    """


class WaitTimeoutError(ClientTimeoutError, TimeoutError):
    """``call(timeout_millis=...)`` or ``streaming_complete(complete_timeout_millis=...)`` ran out.

    Also a :class:`TimeoutError`, which is what the official SDK raises.
    """


class RequestFailure(Exception):
    """The SDK's ``RequestFailure``: a request the service (or the connection) failed.

    Attributes as in the SDK: ``request_id`` (the task id), ``message`` (the
    server's ``error_message``), ``name`` (its ``error_code``), ``http_code``
    (44 for failures reported over the WebSocket, the HTTP status for a
    refused handshake). ``str()`` has the SDK's form.
    """

    def __init__(
        self,
        request_id: str | None = None,
        message: str | None = None,
        name: str | None = None,
        http_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.request_id = request_id
        self.message = message
        self.name = name
        self.http_code = http_code

    def __str__(self) -> str:
        return (
            f"Request failed, request_id: {self.request_id}, "
            f"http_code: {self.http_code} error_name: {self.name}, "
            f"error_message: {self.message}"
        )


_combined: dict[type[CosyVoiceError], type[CosyVoiceError]] = {}
_combined_lock = threading.Lock()


def _reduce(self: CosyVoiceError) -> tuple[Any, ...]:
    # The combined class is made at run time: pickle it as (its CosyVoiceError class, state).
    base = next(
        c for c in type(self).__mro__[1:] if issubclass(c, CosyVoiceError) and c not in _combined.values()
    )
    return _restore, (base, self.args, dict(self.__dict__))


def _restore(base: type[CosyVoiceError], args: tuple[Any, ...], state: dict[str, Any]) -> CosyVoiceError:
    combined = _combined_class(base)
    failure = combined.__new__(combined, *args)
    failure.__dict__.update(state)
    return failure


def _combined_class(cls: type[CosyVoiceError]) -> type[CosyVoiceError]:
    """``cls`` with ``RequestFailure`` mixed in (first, for the SDK's ``__str__``); one per class."""
    with _combined_lock:
        combined = _combined.get(cls)
        if combined is None:
            combined = type(
                cls.__name__,
                (RequestFailure, cls),
                {
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                    "__doc__": f"{cls.__doc__ or cls.__name__}\n\nAlso a ``RequestFailure``.",
                    "__reduce__": _reduce,
                },
            )
            _combined[cls] = combined
        return combined


def _bounded(text: str | None) -> str | None:
    """Server-provided text made safe for an exception: redacted, and bounded (a hostile server may send megabytes)."""
    return None if text is None else bound(redact(text), MAX_MESSAGE)


def is_task_failure(error: CosyVoiceError) -> bool:
    """Failures of the request itself become ``RequestFailure`` s.

    Not: the caller's own mistakes (a bad argument, a method in the wrong
    state), a cancel, and timeouts (the SDK raises ``TimeoutError`` for those,
    and ``WaitTimeoutError`` is one). A parameter the *server* refused (a
    task-failed, so the error carries the task id) is a task failure.
    """
    if isinstance(error, (RequestFailure, InvalidTaskError, ClientTimeoutError, TaskCancelledError)):
        return False
    if isinstance(error, InvalidParameterError):
        return error.task_id is not None
    return True


def as_request_failure(
    error: CosyVoiceError,
    *,
    name: str | None = None,
    message: str | None = None,
    http_code: int | None = None,
) -> CosyVoiceError:
    """``error`` as an instance of ``RequestFailure`` and of its own class (same attributes).

    ``name`` / ``message``: the server's error code and message when it sent
    a task-failed; else the error's code and message. Errors that are not task
    failures (see ``is_task_failure``) are returned unchanged.
    """
    if isinstance(error, RequestFailure) or not is_task_failure(error):
        return error
    combined = _combined_class(type(error))
    failure = combined.__new__(combined, *error.args)
    failure.__dict__.update(error.__dict__)
    if http_code is None:
        code = error.code or ""
        http_code = int(code[4:]) if code.startswith("HTTP") and code[4:].isdigit() else WEBSOCKET_ERROR_CODE
    assert isinstance(failure, RequestFailure)
    failure.request_id = error.task_id
    failure.name = _bounded(name if name is not None else (error.code or type(error).__name__))
    failure.message = _bounded(message if message is not None else error.message)
    failure.http_code = http_code
    failure.__cause__ = error.__cause__
    failure.__suppress_context__ = True
    return failure
