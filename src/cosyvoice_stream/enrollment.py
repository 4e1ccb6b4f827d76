"""Voice cloning (the service's customization HTTP API), without I/O.

This is the one module that knows the wire format of voice enrollment: the
request each action sends and how a reply is read. The synchronous
``cosyvoice_stream.sync.VoiceEnrollmentService``, the asyncio
``cosyvoice_stream.aio.enrollment.AsyncVoiceEnrollmentService`` and the
embedded server's ``/api/v1/services/audio/tts/customization`` all use it, so
the fields are written down once. The rules the service documents for a clone
(prefix, target models, language hints, audio limits) are here as well.

A request is ``POST {base_http_api_url}/services/audio/tts/customization`` with
``{"model": "voice-enrollment", "input": {"action": ..., ...}}``; a reply is
``{"output": {...}, "usage": {...}, "request_id": ...}`` or, on failure, an
HTTP error status with ``{"code": ..., "message": ..., "request_id": ...}``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .endpoint import check_url
from .errors import CosyVoiceError, InvalidParameterError
from .redact import redact
from .voices import KNOWN_MODELS

#: The HTTP API root of the Beijing region (the SDK's ``dashscope.base_http_api_url``).
BEIJING_HTTP_URL = "https://dashscope.aliyuncs.com/api/v1"
#: The HTTP API root of the Singapore region.
SINGAPORE_HTTP_URL = "https://dashscope-intl.aliyuncs.com/api/v1"
#: Below the API root: where every enrollment action is posted.
CUSTOMIZATION_PATH = "services/audio/tts/customization"
#: The ``model`` of every enrollment request (the SDK's default).
ENROLLMENT_MODEL = "voice-enrollment"

ACTIONS: tuple[str, ...] = ("create_voice", "list_voice", "query_voice", "update_voice", "delete_voice")

#: Models a voice can be cloned for (``target_model``): every CosyVoice model.
TARGET_MODELS: tuple[str, ...] = KNOWN_MODELS
#: ``language_hints`` values the clone API documents (only the first is used).
LANGUAGE_HINTS: tuple[str, ...] = ("zh", "en", "fr", "de", "ja", "ko", "ru")
#: The prefix rule of the SDK and this project: letters and digits, 1 to 10 of them.
PREFIX_PATTERN = re.compile(r"\A[A-Za-z0-9]{1,10}\Z")
#: Voice states: under review, usable, refused.
VOICE_STATES: tuple[str, ...] = ("DEPLOYING", "OK", "UNDEPLOYED")

#: Documented sample limits: at most 10 MB and 60 s, at least 16 kHz, and at
#: least 5 s of continuous speech (so nothing shorter can qualify).
MAX_AUDIO_BYTES = 10 * 1024 * 1024
MAX_AUDIO_SECONDS = 60.0
MIN_AUDIO_SECONDS = 5.0
MIN_SAMPLE_RATE = 16_000
#: Voices one account may keep.
MAX_VOICES = 1000

#: Longest server-provided text kept in an error message.
_MAX_MESSAGE_CHARS = 500
#: Longest reply body read; real replies are a few kilobytes.
MAX_REPLY_BYTES = 4 * 1024 * 1024


class VoiceEnrollmentError(CosyVoiceError):
    """A voice-enrollment request failed (refused by the service, or never answered).

    ``request_id``, ``status_code`` (the HTTP status; None when no reply came)
    and ``code`` (the service's error code) describe the failure; the message
    is the service's, redacted and length-bounded. ``retryable`` is True for
    throttling, server errors and transport failures.
    """

    def __init__(
        self,
        request_id: str | None,
        status_code: int | None,
        code: str | None,
        error_message: str,
        *,
        retryable: bool | None = None,
    ) -> None:
        if retryable is None:
            retryable = status_code is None or status_code == 429 or status_code >= 500
        super().__init__(error_message, code=code, retryable=retryable, permanent=status_code in (401, 403))
        self.request_id = request_id
        self.status_code = status_code
        self.error_message = error_message

    def __str__(self) -> str:
        return (
            f"Request: {self.request_id}, Status Code: {self.status_code}, Code: {self.code},"
            f" Error Message: {self.error_message}"
        )


@dataclass(frozen=True)
class EnrollmentRequest:
    """One HTTP request to send: ``POST url`` with ``headers`` and ``body``.

    Its repr leaves out the headers, which carry the key.
    """

    url: str
    headers: Mapping[str, str] = field(repr=False)
    body: bytes
    action: str


@dataclass(frozen=True)
class EnrollmentReply:
    """A successful reply: the ``output`` object and the request id."""

    request_id: str
    output: dict[str, Any]
    usage: dict[str, Any] | None = None


def http_base_url(
    base_address: str | None = None, *, setting: str | None = None, region: str | None = None
) -> str:
    """The API root (``.../api/v1``), checked.

    Order: ``base_address``, then ``setting`` (a module setting such as
    ``cosyvoice_stream.sync.base_http_api_url``), then
    ``DASHSCOPE_HTTP_BASE_URL``, then ``DASHSCOPE_API_REGION``
    (``ap-southeast-1``: Singapore), else Beijing.
    """
    url = base_address or setting or os.environ.get("DASHSCOPE_HTTP_BASE_URL") or None
    if url is None:
        region = region or os.environ.get("DASHSCOPE_API_REGION") or None
        url = SINGAPORE_HTTP_URL if region in ("ap-southeast-1", "intl", "singapore") else BEIJING_HTTP_URL
    return check_http_url(url)


def check_http_url(url: object) -> str:
    """``url`` if a key may be sent to it: https, or plain http to a loopback host only."""
    return check_url(
        url,
        secure="https",
        plain="http",
        example="https://host/api/v1",
        name="base_http_api_url",
        parameter="base_address",
        any_query=True,  # paths are appended to it
    )


def customization_url(base_url: str) -> str:
    """``{base_url}/services/audio/tts/customization``."""
    return f"{base_url.rstrip('/')}/{CUSTOMIZATION_PATH}"


def build_request(
    base_url: str,
    api_key: str | None,
    input: Mapping[str, Any],
    *,
    model: str = ENROLLMENT_MODEL,
    workspace: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    user_agent: str | None = None,
) -> EnrollmentRequest:
    """The request for one action; ``input["action"]`` names it.

    ``parameters`` become the body's ``parameters`` object, as the SDK does
    with extra keyword arguments. The key goes in the Authorization header
    only; extra ``headers`` cannot replace it.
    """
    action = input.get("action")
    if action not in ACTIONS:
        raise InvalidParameterError(
            f"action={action!r} is invalid: expected one of {', '.join(ACTIONS)}", parameter="action"
        )
    body: dict[str, Any] = {"model": model, "input": dict(input)}
    if parameters:
        body["parameters"] = dict(parameters)
    all_headers: dict[str, str] = {}
    for name, value in (headers or {}).items():
        if name.lower() != "authorization":
            all_headers[str(name)] = str(value)
    all_headers["Content-Type"] = "application/json; charset=utf-8"
    all_headers["Accept"] = "application/json; charset=utf-8"
    if user_agent:
        all_headers["User-Agent"] = user_agent
    if workspace:
        all_headers["X-DashScope-WorkSpace"] = workspace
    if api_key:
        all_headers["Authorization"] = f"Bearer {api_key}"
    return EnrollmentRequest(
        url=customization_url(base_url),
        headers=all_headers,
        body=json.dumps(body, ensure_ascii=False).encode("utf-8"),
        action=str(action),
    )


def create_voice_input(
    target_model: str,
    prefix: str,
    url: str,
    language_hints: Iterable[str] | None = None,
    max_prompt_audio_length: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``input`` of ``create_voice`` (the SDK's fields, extras merged last)."""
    fields: dict[str, Any] = {
        "action": "create_voice",
        "target_model": target_model,
        "prefix": prefix,
        "url": url,
    }
    if language_hints is not None:
        fields["language_hints"] = list(language_hints)
    if max_prompt_audio_length is not None:
        fields["max_prompt_audio_length"] = max_prompt_audio_length
    if extra:
        fields.update(extra)
    return fields


def list_voice_input(prefix: str | None = None, page_index: int = 0, page_size: int = 10) -> dict[str, Any]:
    """The ``input`` of ``list_voice``; no ``prefix`` key when it is empty, like the SDK."""
    fields: dict[str, Any] = {"action": "list_voice"}
    if prefix:
        fields["prefix"] = prefix
    fields["page_index"] = page_index
    fields["page_size"] = page_size
    return fields


def query_voice_input(voice_id: str) -> dict[str, Any]:
    return {"action": "query_voice", "voice_id": voice_id}


def update_voice_input(voice_id: str, url: str) -> dict[str, Any]:
    return {"action": "update_voice", "voice_id": voice_id, "url": url}


def delete_voice_input(voice_id: str) -> dict[str, Any]:
    return {"action": "delete_voice", "voice_id": voice_id}


def clean_text(text: object, secrets: Iterable[str] = ()) -> str:
    """Server-provided text made safe for a message: no key, bounded length."""
    value = text if isinstance(text, str) else json.dumps(text, ensure_ascii=False, default=str)
    for secret in secrets:
        if secret:
            value = value.replace(secret, "<redacted>")
    value = redact(value)
    if len(value) > _MAX_MESSAGE_CHARS:
        value = value[:_MAX_MESSAGE_CHARS] + "..."
    return value


def parse_reply(
    status: int, content_type: str | None, body: bytes, *, secrets: Iterable[str] = ()
) -> EnrollmentReply:
    """The reply of a request, or ``VoiceEnrollmentError`` for an error status or a malformed body."""
    secrets = tuple(secrets)
    document: Any = None
    try:
        document = json.loads(body.decode("utf-8")) if body else None
    except (UnicodeDecodeError, ValueError):
        document = None
    request_id = ""
    if isinstance(document, dict) and isinstance(document.get("request_id"), str):
        request_id = clean_text(document["request_id"], secrets)
    if status != 200:
        if isinstance(document, dict):
            code = document.get("code")
            message = document.get("message", document.get("msg", ""))
        else:
            code, message = "Unknown", body[:_MAX_MESSAGE_CHARS].decode("utf-8", "replace")
        raise VoiceEnrollmentError(
            request_id,
            status,
            clean_text(code, secrets) if code is not None else None,
            clean_text(message or "", secrets),
        )
    if not isinstance(document, dict):
        raise VoiceEnrollmentError(
            request_id,
            status,
            "ProtocolError",
            f"the reply is not a JSON object ({content_type or 'no type'})",
        )
    output = document.get("output")
    if output is None:
        output = {}
    if not isinstance(output, dict):
        raise VoiceEnrollmentError(request_id, status, "ProtocolError", "the reply's output is not an object")
    usage = document.get("usage")
    return EnrollmentReply(request_id, output, usage if isinstance(usage, dict) else None)


def voice_id_of(reply: EnrollmentReply) -> str:
    """``output.voice_id`` of a ``create_voice`` reply."""
    voice_id = reply.output.get("voice_id")
    if not isinstance(voice_id, str) or not voice_id:
        raise VoiceEnrollmentError(reply.request_id, 200, "ProtocolError", "the reply has no output.voice_id")
    return voice_id


def voice_list_of(reply: EnrollmentReply) -> list[dict[str, Any]]:
    """``output.voice_list`` of a ``list_voice`` reply."""
    voices = reply.output.get("voice_list")
    if not isinstance(voices, list) or not all(isinstance(v, dict) for v in voices):
        raise VoiceEnrollmentError(
            reply.request_id, 200, "ProtocolError", "the reply has no output.voice_list array"
        )
    return voices


def cloned_voice_id(target_model: str, prefix: str, unique: str) -> str:
    """The documented form of a cloned voice id: ``<target model>-<prefix>-<unique id>``."""
    return f"{target_model}-{prefix}-{unique}"


def prefix_problem(prefix: object) -> str | None:
    """Why ``prefix`` is refused, or None."""
    if not isinstance(prefix, str) or not PREFIX_PATTERN.match(prefix):
        return f"prefix={_shown(prefix)} is invalid: expected 1 to 10 letters or digits (A-Z, a-z, 0-9)"
    return None


def target_model_problem(target_model: object) -> str | None:
    """Why ``target_model`` is refused, or None."""
    if not isinstance(target_model, str) or target_model not in TARGET_MODELS:
        return (
            f"target_model={_shown(target_model)} is invalid: a voice can be cloned only for a"
            f" CosyVoice model ({', '.join(TARGET_MODELS)})"
        )
    return None


def language_hints_problem(hints: object) -> str | None:
    """Why ``language_hints`` is refused, or None."""
    if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
        return "language_hints must be a list of language codes"
    unknown = [h for h in hints if h not in LANGUAGE_HINTS]
    if unknown:
        return f"language_hints {unknown!r} are not supported: expected some of {', '.join(LANGUAGE_HINTS)}"
    return None


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
