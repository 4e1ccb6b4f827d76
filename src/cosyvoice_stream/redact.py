"""Keep credentials out of logs, including the ``websockets`` handshake debug lines."""

from __future__ import annotations

import logging
import re

_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"(Authorization:\s*)(?!Bearer\b)\S.*", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with every bearer credential replaced by ``<redacted>``."""
    return _AUTH_HEADER.sub(r"\1<redacted>", _BEARER.sub(r"\1<redacted>", text))


class RedactingFilter(logging.Filter):
    """Rewrites records so no Authorization value reaches any handler."""

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
