"""The official DashScope SDK's synchronous CosyVoice API, without the ``dashscope`` package.

A program written for the SDK runs on this package when its imports change::

    import dashscope                          ->  import cosyvoice_stream.sync as dashscope
    from dashscope.audio.tts_v2 import *      ->  from cosyvoice_stream.sync import *

Module settings, read when a ``SpeechSynthesizer`` is created (like the SDK's
``dashscope.api_key`` and ``dashscope.base_websocket_api_url``):

- ``api_key``: used when no ``api_key=`` argument is given; else
  ``DASHSCOPE_API_KEY``.
- ``base_websocket_api_url``: used when no ``url=`` argument is given; else
  ``DASHSCOPE_WEBSOCKET_BASE_URL``, else the region settings, else Beijing.

Task failures raise exceptions that are both the SDK's ``RequestFailure``
(exported here: import it from here instead of ``dashscope.common.error``)
and the mapped ``CosyVoiceError`` subclass.

What differs from the SDK, on purpose: a refused key raises
``AuthenticationError`` at once; a task-failed raises its error (never
partial audio) without a callback and goes to ``on_error`` with one; a dead
connection is found by pings and deadlines; callbacks run on their own thread
so a slow callback never stalls the socket. See docs/sdk-api.md.
"""

from __future__ import annotations

from ..aio.connection import Timeouts as Timeouts
from ..options import AudioFormat
from .callback import ErrorMessage as ErrorMessage
from .callback import ResultCallback
from .enrollment import VoiceEnrollmentException, VoiceEnrollmentService
from .errors import InvalidTaskError as InvalidTaskError
from .errors import RequestFailure as RequestFailure
from .errors import WaitTimeoutError as WaitTimeoutError
from .pool import SpeechSynthesizerObjectPool
from .synthesizer import SpeechSynthesizer

#: API key used by synthesizers created without ``api_key=`` (else ``DASHSCOPE_API_KEY``).
api_key: str | None = None
#: Endpoint used by synthesizers created without ``url=`` (else ``DASHSCOPE_WEBSOCKET_BASE_URL``).
base_websocket_api_url: str | None = None
#: HTTP API root for ``VoiceEnrollmentService`` without ``base_address=`` (else ``DASHSCOPE_HTTP_BASE_URL``).
base_http_api_url: str | None = None

__all__ = [
    "AudioFormat",
    "ResultCallback",
    "SpeechSynthesizer",
    "SpeechSynthesizerObjectPool",
    "VoiceEnrollmentException",
    "VoiceEnrollmentService",
]
# Exactly the SDK's ``tts_v2.__all__``. ErrorMessage, InvalidTaskError, RequestFailure,
# Timeouts and WaitTimeoutError are public too, but not star-exported: ``tts_v2`` does not
# export them either.
