"""Keep credentials out of logs, exceptions and reprs, and keep server text bounded.

Two dangers come with any string a server sends back (a 401 body, a
task-failed message, a close reason): it may quote the API key, and it may be
huge. Everything that puts such a string into a message, a log record or a
repr goes through ``redact`` (and ``server_text`` bounds it); ``CosyVoiceError``
applies it to every message it is constructed with, so no layer above the
core (sync API, LiveKit, Pipecat's ``ErrorFrame.exception``) can forget it.

The secrets to hide are the ``Bearer``/``Authorization`` values found in the
text itself and every key or token this process handed to a connection
(``remember_secret``, called by ``Credentials``); the registry keeps the most
recent ``_MAX_SECRETS`` values, each at least ``MIN_SECRET_LENGTH`` characters
long (a shorter value would blank out ordinary words of every message).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable

_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(Authorization:\s*)(?!Bearer\b)\S.*", re.IGNORECASE)

#: What a hidden secret is replaced with.
HIDDEN = "<redacted>"
#: Shortest value ``remember_secret`` records (real DashScope keys are 35 characters).
MIN_SECRET_LENGTH = 8
#: Longest server-provided string kept in a message (longer ones are cut, with a note).
MAX_SERVER_TEXT = 500
#: Longest message an exception carries.
MAX_MESSAGE = 2000
_MAX_SECRETS = 64

_secrets: OrderedDict[str, None] = OrderedDict()
_secrets_lock = threading.Lock()


def remember_secret(value: str | None) -> None:
    """Hide ``value`` from every later message, log record and repr of this process."""
    if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        _secrets[value] = None
        _secrets.move_to_end(value)
        while len(_secrets) > _MAX_SECRETS:
            _secrets.popitem(last=False)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every bearer credential and every known secret replaced by ``<redacted>``.

    ``secrets``: further values to hide (of any length), e.g. the caller's own key.
    """
    text = _AUTH_HEADER.sub(r"\1" + HIDDEN, _BEARER.sub(r"\1" + HIDDEN, text))
    with _secrets_lock:
        known = list(_secrets)
    # Longest first: a key that contains another key is hidden whole.
    for secret in sorted({*known, *(s for s in secrets if s)}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, HIDDEN)
    return text


def bound(text: str, limit: int = MAX_SERVER_TEXT) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def server_text(value: object, limit: int = MAX_SERVER_TEXT) -> str:
    """A server-provided value made safe for a message: a string, redacted, at most ``limit`` long.

    The text is cut before it is scanned (a 1 MB message costs no more than a
    short one), but with room for the longest secret, so a key straddling the
    cut is still hidden whole.
    """
    text = value if isinstance(value, str) else repr(value)
    with _secrets_lock:
        room = max((len(s) for s in _secrets), default=0)
    head = redact(text[: limit + room + 200])
    if len(head) <= limit:
        return head if len(text) <= limit + room + 200 else f"{head}... [more characters]"
    return f"{head[:limit]}... [{len(text) - limit} more characters]"


class RedactingFilter(logging.Filter):
    """Rewrites records so no credential reaches any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


def protocol_logger() -> logging.Logger:
    """The logger handed to ``websockets`` connections: secrets redacted."""
    logger = logging.getLogger("cosyvoice_stream.websockets")
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
    return logger
