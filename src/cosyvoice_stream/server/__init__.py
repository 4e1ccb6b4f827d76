"""An embedded DashScope-compatible CosyVoice WebSocket server with offline speech.

>>> async with EmbeddedServer(engine="tone") as server:   # doctest: +SKIP
...     client = connect(server.url)

See docs/server.md for every switch, the engines and the injectable faults.
"""

from __future__ import annotations

from .app import EmbeddedServer, ServerHandle
from .config import SERVICE_PATH, ServerConfig, TaskRecord
from .faults import Fault

__all__ = ["SERVICE_PATH", "EmbeddedServer", "Fault", "ServerConfig", "ServerHandle", "TaskRecord"]
