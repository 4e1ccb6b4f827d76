"""The embedded server's voice cloning: the customization HTTP API and its voice store.

``POST /api/v1/services/audio/tts/customization`` with model
``voice-enrollment`` answers ``create_voice``, ``list_voice``,
``query_voice``, ``update_voice`` and ``delete_voice`` as the service
documents them, so the SDK (``dashscope.base_http_api_url =
"http://HOST:PORT/api/v1"``) and ``cosyvoice_stream``'s clients work against
it. It runs on its own host and port (the WebSocket server keeps its own),
on the standard library's ``ThreadingHTTPServer``.

Sample audio is fetched only from loopback ``http(s)://`` URLs and
``file://`` URLs, at most 10 MB, with a bounded timeout and no redirects. It
must be a WAV file (16-bit PCM, at least 16 kHz, 5 to 60 s, not silent): the
embedded server has no MP3/M4A decoder, so it refuses those with a clear
error. A clone is usable at once (``status`` ``OK``); the service reviews it
first (``DEPLOYING``).
"""

from __future__ import annotations

import io
import json
import logging
import math
import selectors
import socket
import threading
import urllib.error
import urllib.request
import uuid
import wave
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np

from ..endpoint import is_loopback
from ..enrollment import (
    CUSTOMIZATION_PATH,
    ENROLLMENT_MODEL,
    MAX_AUDIO_BYTES,
    MAX_AUDIO_SECONDS,
    MAX_VOICES,
    MIN_AUDIO_SECONDS,
    MIN_SAMPLE_RATE,
    clean_text,
    cloned_voice_id,
    language_hints_problem,
    prefix_problem,
    target_model_problem,
)

logger = logging.getLogger("cosyvoice_stream.server.enrollment")

#: The path the service answers on (the SDK appends it to ``base_http_api_url``).
ENROLLMENT_PATH = f"/api/v1/{CUSTOMIZATION_PATH}"
#: Seconds allowed to fetch a sample.
FETCH_TIMEOUT_S = 10.0
#: Largest request body accepted (requests carry a URL, not audio).
MAX_BODY_BYTES = 64 * 1024
#: Peak level below which a sample counts as silence (16-bit full scale is 32767).
_SILENCE_PEAK = 100
_PAGE_SIZE_MAX = 1000
#: Name prefix of the API's threads (the embedded server's, so leak checks can tell them apart).
THREAD_NAME = "cosyvoice-embedded-server-enrollment"
#: Seconds an idle keep-alive connection is kept (the SDK pools its connections).
_IDLE_TIMEOUT_S = 30.0


class EnrollmentRefused(Exception):
    """A request the customization API refuses: HTTP ``status`` with ``code`` and ``message``."""

    def __init__(self, message: str, *, code: str = "InvalidParameter", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


@dataclass(frozen=True)
class SampleInfo:
    """What the server read from a sample."""

    sample_rate: int
    channels: int
    duration_s: float


@dataclass
class ClonedVoice:
    """One cloned voice in a ``VoiceStore``."""

    voice_id: str
    target_model: str
    prefix: str
    resource_link: str
    sample: SampleInfo
    language_hints: list[str] = field(default_factory=list)
    status: str = "OK"
    gmt_create: str = ""
    gmt_modified: str = ""

    def summary(self) -> dict[str, Any]:
        """An entry of ``list_voice``'s ``voice_list``."""
        return {
            "gmt_create": self.gmt_create,
            "voice_id": self.voice_id,
            "gmt_modified": self.gmt_modified,
            "status": self.status,
        }

    def details(self) -> dict[str, Any]:
        """The ``output`` of ``query_voice``."""
        return {
            "gmt_create": self.gmt_create,
            "resource_link": self.resource_link,
            "target_model": self.target_model,
            "gmt_modified": self.gmt_modified,
            "status": self.status,
        }


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class VoiceStore:
    """The cloned voices of one embedded server; thread-safe.

    ``target_model(voice_id)`` is what the synthesis path asks: the model a
    cloned voice speaks with, or None when the id is not (or no longer) a
    clone here.
    """

    def __init__(self, max_voices: int = MAX_VOICES) -> None:
        self._voices: dict[str, ClonedVoice] = {}
        self._lock = threading.Lock()
        self.max_voices = max_voices

    def target_model(self, voice_id: str) -> str | None:
        with self._lock:
            voice = self._voices.get(voice_id)
            return voice.target_model if voice is not None else None

    def get(self, voice_id: str) -> ClonedVoice | None:
        with self._lock:
            return self._voices.get(voice_id)

    def __contains__(self, voice_id: object) -> bool:
        with self._lock:
            return voice_id in self._voices

    def __len__(self) -> int:
        with self._lock:
            return len(self._voices)

    def voice_ids(self) -> list[str]:
        with self._lock:
            return list(self._voices)

    def add(
        self,
        target_model: str,
        prefix: str,
        resource_link: str,
        sample: SampleInfo,
        language_hints: Iterable[str] = (),
    ) -> ClonedVoice:
        """Store a new clone under a fresh id of the documented form."""
        now = _now()
        voice = ClonedVoice(
            voice_id=cloned_voice_id(target_model, prefix, uuid.uuid4().hex),
            target_model=target_model,
            prefix=prefix,
            resource_link=resource_link,
            sample=sample,
            language_hints=list(language_hints),
            gmt_create=now,
            gmt_modified=now,
        )
        with self._lock:
            if len(self._voices) >= self.max_voices:
                raise EnrollmentRefused(
                    f"the voice quota is used up ({self.max_voices} voices); delete voices you no longer need",
                    code="Throttling.AllocationQuota",
                )
            self._voices[voice.voice_id] = voice
        return voice

    def replace_sample(self, voice_id: str, resource_link: str, sample: SampleInfo) -> ClonedVoice:
        with self._lock:
            voice = self._existing(voice_id)
            voice.resource_link = resource_link
            voice.sample = sample
            voice.gmt_modified = _now()
            return voice

    def remove(self, voice_id: str) -> None:
        with self._lock:
            self._existing(voice_id)
            del self._voices[voice_id]

    def page(self, prefix: str | None, page_index: int, page_size: int) -> list[ClonedVoice]:
        """Voices (of ``prefix`` if given), newest first, one page."""
        with self._lock:
            voices = [v for v in self._voices.values() if prefix is None or v.prefix == prefix]
        voices.reverse()
        start = page_index * page_size
        return voices[start : start + page_size]

    def _existing(self, voice_id: str) -> ClonedVoice:
        voice = self._voices.get(voice_id)
        if voice is None:
            raise EnrollmentRefused(f"voice_id {_shown(voice_id)} does not exist (never created, or deleted)")
        return voice


# -- samples ---------------------------------------------------------------
class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A loopback URL must not lead the server to another host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch_sample(url: object, timeout: float = FETCH_TIMEOUT_S) -> bytes:
    """The bytes at ``url``: a loopback ``http(s)://`` URL or a ``file://`` URL, at most 10 MB."""
    if not isinstance(url, str) or not url:
        raise EnrollmentRefused("url is required: the URL of the sample audio")
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise EnrollmentRefused(f"url {_shown(url)} is not a valid URL") from None
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise EnrollmentRefused(f"url {_shown(url)} is refused: a file URL must name a local file")
        path = urllib.request.url2pathname(unquote(parts.path))
        try:
            with open(path, "rb") as handle:
                data = handle.read(MAX_AUDIO_BYTES + 1)
        except OSError as error:
            raise EnrollmentRefused(
                f"url {_shown(url)} cannot be read: {error.strerror or type(error).__name__}"
            ) from None
    elif parts.scheme in ("http", "https"):
        if not is_loopback(host):
            raise EnrollmentRefused(
                f"url {_shown(_without_query(url))} is refused: the embedded server fetches samples only"
                " from loopback hosts (127.0.0.1, ::1, localhost) or file:// URLs"
            )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
        try:
            with opener.open(url, timeout=timeout) as response:
                data = response.read(MAX_AUDIO_BYTES + 1)
        except urllib.error.HTTPError as error:
            error.close()
            raise EnrollmentRefused(
                f"url {_shown(_without_query(url))} cannot be fetched: HTTP {error.code}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = error.reason if isinstance(error, urllib.error.URLError) else error
            raise EnrollmentRefused(
                f"url {_shown(_without_query(url))} cannot be fetched: {type(reason).__name__}"
            ) from None
    else:
        raise EnrollmentRefused(
            f"url {_shown(_without_query(url))} is refused: expected a loopback http(s):// URL or a file:// URL"
        )
    if len(data) > MAX_AUDIO_BYTES:
        raise EnrollmentRefused(f"the sample is larger than {MAX_AUDIO_BYTES // (1024 * 1024)} MB")
    return data


def check_sample(data: bytes) -> SampleInfo:
    """The sample's format, if it is usable for cloning; else ``EnrollmentRefused`` saying why."""
    if data[:3] == b"ID3" or data[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2") or data[4:8] == b"ftyp":
        raise EnrollmentRefused(
            "the sample is MP3 or M4A: the service accepts those, but the embedded server decodes"
            " only WAV (16-bit PCM); convert the sample to WAV",
            code="Audio.FormatError",
        )
    try:
        with wave.open(io.BytesIO(data)) as reader:
            channels = reader.getnchannels()
            width = reader.getsampwidth()
            rate = reader.getframerate()
            frames = reader.getnframes()
            pcm = reader.readframes(frames)
    except (wave.Error, EOFError, ValueError):
        raise EnrollmentRefused(
            "the sample is not decodable audio: expected a WAV file (16-bit PCM)", code="Audio.DecoderError"
        ) from None
    if width != 2:
        raise EnrollmentRefused(
            f"the sample is {8 * width}-bit WAV: expected 16-bit PCM", code="Audio.FormatError"
        )
    if rate < MIN_SAMPLE_RATE:
        raise EnrollmentRefused(
            f"the sample rate is {rate} Hz: at least {MIN_SAMPLE_RATE} Hz is required",
            code="Audio.FormatError",
        )
    duration = frames / rate if rate else 0.0
    if duration < MIN_AUDIO_SECONDS:
        raise EnrollmentRefused(
            f"the sample lasts {duration:.1f} s: at least {MIN_AUDIO_SECONDS:g} s of speech is required"
            " (10 to 20 s recommended)",
            code="Audio.AudioShortError",
        )
    if duration > MAX_AUDIO_SECONDS:
        raise EnrollmentRefused(
            f"the sample lasts {duration:.1f} s: at most {MAX_AUDIO_SECONDS:g} s is accepted"
            " (10 to 20 s recommended)",
            code="Audio.AudioLongError",
        )
    samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % (2 * channels)], dtype="<i2")
    first_channel = samples[::channels]  # the service uses the first channel only
    if first_channel.size == 0 or int(np.abs(first_channel.astype(np.int32)).max()) < _SILENCE_PEAK:
        raise EnrollmentRefused(
            "the sample's first channel is silent: it must hold a human voice", code="Audio.SilentAudioError"
        )
    return SampleInfo(sample_rate=rate, channels=channels, duration_s=round(duration, 3))


# -- the API ----------------------------------------------------------------
class EnrollmentService:
    """The customization API's logic, independent of HTTP: ``handle(body) -> output``."""

    def __init__(self, store: VoiceStore, fetch_timeout: float = FETCH_TIMEOUT_S) -> None:
        self.store = store
        self.fetch_timeout = fetch_timeout

    def handle(self, body: object) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise EnrollmentRefused("the request body must be a JSON object")
        model = body.get("model")
        if model != ENROLLMENT_MODEL:
            raise EnrollmentRefused(
                f"model {_shown(model)} is invalid: the customization API takes model {ENROLLMENT_MODEL!r}",
                code="ModelNotFound" if isinstance(model, str) and model else "InvalidParameter",
            )
        fields = body.get("input")
        if not isinstance(fields, dict):
            raise EnrollmentRefused("input must be an object with an action")
        action = fields.get("action")
        handler = {
            "create_voice": self._create,
            "list_voice": self._list,
            "query_voice": self._query,
            "update_voice": self._update,
            "delete_voice": self._delete,
        }.get(action if isinstance(action, str) else "")
        if handler is None:
            raise EnrollmentRefused(
                f"action {_shown(action)} is invalid: expected create_voice, list_voice, query_voice,"
                " update_voice or delete_voice"
            )
        return handler(fields)

    def _sample(self, url: object) -> SampleInfo:
        return check_sample(fetch_sample(url, self.fetch_timeout))

    def _create(self, fields: dict[str, Any]) -> dict[str, Any]:
        target_model, prefix, url = fields.get("target_model"), fields.get("prefix"), fields.get("url")
        problem = target_model_problem(target_model) or prefix_problem(prefix)
        hints = fields.get("language_hints")
        if problem is None and hints is not None:
            problem = language_hints_problem(hints)
        length = fields.get("max_prompt_audio_length")
        if problem is None and length is not None and not _in_range(length, 0.0, MAX_AUDIO_SECONDS):
            problem = f"max_prompt_audio_length={length!r} is invalid: expected seconds, 0 < s <= 60"
        if problem is not None:
            raise EnrollmentRefused(problem)
        sample = self._sample(url)
        voice = self.store.add(str(target_model), str(prefix), str(url), sample, hints or ())
        logger.info("cloned voice %s (%.1f s sample)", voice.voice_id, sample.duration_s)
        return {"voice_id": voice.voice_id}

    def _list(self, fields: dict[str, Any]) -> dict[str, Any]:
        prefix = fields.get("prefix")
        if prefix in (None, ""):
            prefix = None
        else:
            problem = prefix_problem(prefix)
            if problem is not None:
                raise EnrollmentRefused(problem)
        page_index = fields.get("page_index", 0)
        page_size = fields.get("page_size", 10)
        if not _is_int(page_index) or page_index < 0:
            raise EnrollmentRefused(f"page_index={page_index!r} is invalid: expected an integer >= 0")
        if not _is_int(page_size) or not 1 <= page_size <= _PAGE_SIZE_MAX:
            raise EnrollmentRefused(
                f"page_size={page_size!r} is invalid: expected an integer in 1..{_PAGE_SIZE_MAX}"
            )
        page = self.store.page(prefix, page_index, page_size)
        return {"voice_list": [voice.summary() for voice in page]}

    def _voice_id(self, fields: dict[str, Any]) -> str:
        voice_id = fields.get("voice_id")
        if not isinstance(voice_id, str) or not voice_id:
            raise EnrollmentRefused("voice_id is required")
        return voice_id

    def _query(self, fields: dict[str, Any]) -> dict[str, Any]:
        voice_id = self._voice_id(fields)
        voice = self.store.get(voice_id)
        if voice is None:
            raise EnrollmentRefused(f"voice_id {_shown(voice_id)} does not exist (never created, or deleted)")
        return voice.details()

    def _update(self, fields: dict[str, Any]) -> dict[str, Any]:
        voice_id = self._voice_id(fields)
        if voice_id not in self.store:  # checked before fetching anything
            raise EnrollmentRefused(f"voice_id {_shown(voice_id)} does not exist (never created, or deleted)")
        sample = self._sample(fields.get("url"))
        self.store.replace_sample(voice_id, str(fields.get("url")), sample)
        return {}

    def _delete(self, fields: dict[str, Any]) -> dict[str, Any]:
        self.store.remove(self._voice_id(fields))
        return {}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _in_range(value: object, low: float, high: float) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and low < value <= high
    )


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def _shown(value: object) -> str:
    text = clean_text(repr(value))
    return text if len(text) <= 80 else text[:77] + "..."


class _Handler(BaseHTTPRequestHandler):
    """One HTTP request to the customization API."""

    server: _HttpServer
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT_S
    server_version = "cosyvoice-stream-embedded"
    sys_version = ""

    def do_POST(self) -> None:
        request_id = str(uuid.uuid4())
        body_read = False
        try:
            self._check_path()
            self._check_key()
            body = self._body()
            body_read = True
            output = self.server.service.handle(body)
        except EnrollmentRefused as refused:
            if not body_read:  # its unread bytes would be taken for the next request on this connection
                self.close_connection = True
            logger.info("customization request refused: %s %s", refused.code, refused.message)
            self._reply(
                refused.status, {"request_id": request_id, "code": refused.code, "message": refused.message}
            )
            return
        except Exception:  # pragma: no cover - reported to the client as the service would
            logger.exception("customization request failed")
            self._reply(
                500,
                {
                    "request_id": request_id,
                    "code": "InternalError",
                    "message": "An internal error has occured, please try again later.",
                },
            )
            return
        self._reply(200, {"output": output, "usage": {"count": 1}, "request_id": request_id})

    def do_GET(self) -> None:
        self._reply(405, {"request_id": str(uuid.uuid4()), "code": "MethodNotAllowed", "message": "use POST"})

    def _check_path(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        if path != ENROLLMENT_PATH:
            raise EnrollmentRefused(
                f"no API at {_shown(path)}: voice cloning is POST {ENROLLMENT_PATH}",
                code="NotFound",
                status=404,
            )

    def _check_key(self) -> None:
        keys = self.server.api_keys
        if not keys:
            return
        scheme, _, key = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or key.strip() not in keys:
            raise EnrollmentRefused("Invalid API-key provided.", code="InvalidApiKey", status=401)

    def _body(self) -> object:
        try:
            length = int(self.headers.get("Content-Length") or "0")
        except ValueError:
            raise EnrollmentRefused("Content-Length is not a number") from None
        if length <= 0:
            raise EnrollmentRefused("the request has no body: expected a JSON object")
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            raise EnrollmentRefused(f"the request body is larger than {MAX_BODY_BYTES} bytes")
        raw = self.rfile.read(length)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise EnrollmentRefused("the request body is not valid JSON") from None

    def _reply(self, status: int, document: dict[str, Any]) -> None:
        payload = json.dumps(document, ensure_ascii=False).encode("utf-8")
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # The request line has no secrets (the key is in a header); stderr stays quiet.
        logger.debug("%s %s", self.address_string(), clean_text(format % args))


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], service: EnrollmentService, api_keys: frozenset[str]
    ) -> None:
        self.service = service
        self.api_keys = api_keys
        super().__init__(address, _Handler)


class EnrollmentServer:
    """The customization HTTP API on ``host:port`` (0: a free port), serving ``store``.

    ``start()`` binds and serves from a daemon thread; ``stop()`` ends it at
    once (the thread waits on the socket and a wake-up pipe, not on a poll
    interval). ``url`` is the API root to give clients
    (``http://HOST:PORT/api/v1``).
    """

    def __init__(
        self,
        store: VoiceStore,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: frozenset[str] = frozenset(),
        fetch_timeout: float = FETCH_TIMEOUT_S,
    ) -> None:
        self.store = store
        self.host = host
        self.requested_port = port
        self.api_keys = frozenset(api_keys)
        self.fetch_timeout = fetch_timeout
        self._server: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("the enrollment server is already running")
        server_class: type[_HttpServer] = _HttpServer
        if ":" in self.host:
            server_class = type("_HttpServer6", (_HttpServer,), {"address_family": socket.AF_INET6})
        server = server_class(
            (self.host, self.requested_port), EnrollmentService(self.store, self.fetch_timeout), self.api_keys
        )
        wake = socket.socketpair()
        # Every descriptor is made here, before start() returns, so resource checks see none appear later.
        selector = selectors.DefaultSelector()
        selector.register(server, selectors.EVENT_READ)
        selector.register(wake[0], selectors.EVENT_READ)
        thread = threading.Thread(
            target=self._serve, args=(server, selector, wake[0]), name=f"{THREAD_NAME}-accept", daemon=True
        )
        self._server, self._thread, self._wake = server, thread, wake
        thread.start()
        logger.info("voice cloning API listening on %s", self.url)

    @staticmethod
    def _serve(server: _HttpServer, selector: selectors.BaseSelector, wake: socket.socket) -> None:
        with selector:
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    # One accept (no selector of its own, unlike handle_request); the
                    # request runs on its own thread.
                    server._handle_request_noblock()  # type: ignore[attr-defined]

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close the socket (idempotent)."""
        server, thread, wake = self._server, self._thread, self._wake
        self._server = self._thread = self._wake = None
        if server is None:
            return
        if wake is not None:
            wake[1].send(b"x")
        if thread is not None:
            thread.join(timeout)
        server.server_close()
        if wake is not None:
            wake[0].close()
            wake[1].close()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the enrollment server is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api/v1"
