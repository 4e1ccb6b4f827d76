"""Errors specific to the synchronous SDK-style API (both are CosyVoiceErrors)."""

from __future__ import annotations

from ..errors import ClientTimeoutError, CosyVoiceError


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
