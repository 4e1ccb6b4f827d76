"""How a framework adapter reports a core error: its kind, its HTTP status, one message.

Framework-neutral: the Pipecat service maps ``error_kind`` onto its
``ErrorCategory`` and the LiveKit plugin maps ``http_status`` onto
``APIStatusError``, so both classify every error the same way.
"""

from __future__ import annotations

from typing import Literal

from .errors import (
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    InstructionError,
    InvalidParameterError,
    ProtocolError,
    ServerError,
    SSMLError,
    TextLimitError,
    ThrottlingError,
    VoiceModelMismatchError,
)

ErrorKind = Literal[
    "authentication", "invalid_request", "application", "rate_limit", "connectivity", "server", "unknown"
]


def error_kind(error: CosyVoiceError) -> ErrorKind:
    """What went wrong, for a framework's error category.

    ``invalid_request``: these settings will fail every time (voice/model
    mismatch, instruction on a model without it, other permanent parameter
    errors). ``application``: this text or this update was refused, the next
    one may be fine. A retryable authentication failure (a token provider
    that failed for now) is ``connectivity``.
    """
    if isinstance(error, AuthenticationError):
        return "connectivity" if error.retryable else "authentication"
    if isinstance(error, (VoiceModelMismatchError, InstructionError)):
        return "invalid_request"
    if isinstance(error, (TextLimitError, SSMLError)):
        return "application"
    if isinstance(error, InvalidParameterError):
        return "invalid_request" if error.permanent else "application"
    if isinstance(error, ThrottlingError):
        return "rate_limit"
    if isinstance(error, (ConnectionLostError, ClientTimeoutError)):
        return "connectivity"
    if isinstance(error, (ServerError, ProtocolError)):
        return "server"
    return "unknown"


def http_status(error: CosyVoiceError) -> int | None:
    """The HTTP status of the failure: the handshake's when it was refused, else
    the status a REST caller would get for that kind of error; None for network
    and timeout failures, which have none."""
    code = error.code or ""
    if code.startswith("HTTP") and code[4:].isdigit():
        return int(code[4:])
    if isinstance(error, AuthenticationError):
        return 401
    if isinstance(error, InvalidParameterError):
        return 400
    if isinstance(error, ThrottlingError):
        return 429
    if isinstance(error, ServerError):
        return 500
    return None


def describe_failure(error: Exception, *, permanent: bool) -> str:
    """One line for a failed task or connection; ``permanent``: say that retrying cannot help."""
    connection = isinstance(error, (ConnectionLostError, ClientTimeoutError, AuthenticationError))
    message = f"CosyVoice {'connection' if connection else 'task'} failed: {error}"
    if permanent:
        message += " (the service stops speaking until its settings or credentials change)"
    return message
