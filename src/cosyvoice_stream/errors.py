"""One exception hierarchy for everything that can go wrong.

Every error carries ``retryable``: True when the same request may succeed if
tried again (a dropped connection, throttling), False when it cannot (a bad
key, a bad parameter). Messages never contain the API key: every message is
passed through ``cosyvoice_stream.redact`` when the error is made (a server
may quote the key back), and bounded in length.
"""

from __future__ import annotations

from .redact import MAX_MESSAGE, bound, redact


class CosyVoiceError(Exception):
    """Base class of every error raised by cosyvoice-stream.

    ``retryable``: the same request may succeed if sent again.
    ``permanent``: every request will fail the same way until the
    configuration (key, voice, model, instruction) changes, so a voice agent
    should stop trying rather than fail once per utterance.
    """

    retryable: bool = False
    permanent: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        task_id: str | None = None,
        retryable: bool | None = None,
        permanent: bool | None = None,
    ) -> None:
        message = bound(redact(message), MAX_MESSAGE)
        super().__init__(message)
        self.message = message
        self.code = code
        self.task_id = task_id
        if retryable is not None:
            self.retryable = retryable
        if permanent is not None:
            self.permanent = permanent

    def __str__(self) -> str:
        parts = [self.message]
        if self.code:
            parts.append(f"[code={self.code}]")
        if self.task_id:
            parts.append(f"[task_id={self.task_id}]")
        return " ".join(parts)


class InvalidParameterError(CosyVoiceError, ValueError):
    """A parameter or input text was refused, by this client or by the server."""

    def __init__(self, message: str, *, parameter: str | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.parameter = parameter


class VoiceModelMismatchError(InvalidParameterError):
    """The voice does not belong to the model's generation (server code 418)."""

    permanent = True


class InstructionError(InvalidParameterError):
    """The instruction was refused (server code 428, or a model without instructions)."""

    permanent = True


class TextLimitError(InvalidParameterError):
    """Text over a per-message or per-task limit."""


class SSMLError(InvalidParameterError):
    """SSML where it is not allowed (streaming input) or malformed SSML."""


class AuthenticationError(CosyVoiceError):
    """The handshake was refused (HTTP 401/403): missing, wrong or expired key."""

    permanent = True


class ThrottlingError(CosyVoiceError):
    """The service is rate-limiting this account (Throttling.*, HTTP 429)."""

    retryable = True


class ServerTimeoutError(CosyVoiceError):
    """The server gave up waiting for text (``request timeout after 23 seconds``)."""


class ServerError(CosyVoiceError):
    """Any other task failure reported by the server."""

    retryable = True


class ConnectionLostError(CosyVoiceError):
    """The connection could not be opened or closed before the task ended.

    ``close_code``/``close_reason``: the close frame the server sent, if any
    (the reason redacted and bounded like every server-provided string).
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        close_code: int | None = None,
        close_reason: str | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.close_code = close_code
        self.close_reason = close_reason


class ProtocolError(CosyVoiceError):
    """The server sent something the protocol does not allow.

    Also a malformed WebSocket frame (bad framing, a masked server frame,
    invalid UTF-8 in a text frame, a frame over the size limit): never
    retryable, raised as soon as the frame arrives.
    """


class ClientTimeoutError(CosyVoiceError):
    """A client-side deadline passed (connect, task start, first audio, idle)."""

    retryable = True


class TaskCancelledError(CosyVoiceError):
    """The task was cancelled by the caller."""
