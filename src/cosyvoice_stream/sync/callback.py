"""The SDK's callback interface and the message ``on_error`` receives."""

from __future__ import annotations

from ..errors import CosyVoiceError
from ..protocol import failure_message


class ResultCallback:
    """Receives the results of a synthesis task; override what you need.

    Order, as in the official SDK: ``on_open`` once the server started the
    task; ``on_event`` (the server's JSON text of each ``result-generated``
    event) and ``on_data`` (audio bytes) while it runs; then either
    ``on_complete`` or ``on_error``, and ``on_close`` last.

    The methods run on a dispatcher thread of the synthesizer, never on the
    thread that reads the socket: a slow callback delays the callbacks after
    it but not the network. An exception raised by a callback is logged and
    the task goes on.
    """

    def on_open(self) -> None:
        pass

    def on_complete(self) -> None:
        pass

    def on_error(self, message: str) -> None:
        pass

    def on_close(self) -> None:
        pass

    def on_event(self, message: str) -> None:
        pass

    def on_data(self, data: bytes) -> None:
        pass


class ErrorMessage(str):
    """What ``on_error`` receives: the task-failed JSON text, plus the exception.

    As in the SDK the value is the server's task-failed message (a JSON
    string with ``header.error_code`` and ``header.error_message``); for errors
    the client detects itself (connection lost, timeout) it is a message of the
    same shape. ``.error`` is the mapped :class:`CosyVoiceError`.
    """

    error: CosyVoiceError

    def __new__(cls, text: str, error: CosyVoiceError) -> ErrorMessage:
        self = super().__new__(cls, text)
        self.error = error
        return self

    @classmethod
    def from_error(cls, error: CosyVoiceError, task_id: str) -> ErrorMessage:
        """A task-failed-shaped message for an error found by the client."""
        return cls(failure_message(task_id, error.code or type(error).__name__, error.message), error)
