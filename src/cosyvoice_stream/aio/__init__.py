"""The asyncio front end of the core."""

from .connection import Connection, Timeouts
from .pool import ConnectionPool, PoolStats
from .stream import SynthesisStream
from .synthesizer import AsyncSynthesizer, SynthesisResult

__all__ = [
    "AsyncSynthesizer",
    "Connection",
    "ConnectionPool",
    "PoolStats",
    "SynthesisResult",
    "SynthesisStream",
    "Timeouts",
]
