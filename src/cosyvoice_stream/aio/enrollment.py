"""Voice cloning from asyncio: ``AsyncVoiceEnrollmentService``.

The same five actions as the SDK's ``VoiceEnrollmentService`` (create, list,
query, update, delete), as coroutines. Each request is one short HTTP POST;
it runs in a worker thread (``asyncio.to_thread``) on the standard library's
HTTP client, so the core needs no HTTP library. Requests and replies are
built and read by ``cosyvoice_stream.enrollment``.
"""

from __future__ import annotations

import asyncio
import email.message
import os
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..endpoint import Credentials, is_loopback
from ..enrollment import (
    ENROLLMENT_MODEL,
    MAX_REPLY_BYTES,
    EnrollmentReply,
    EnrollmentRequest,
    VoiceEnrollmentError,
    build_request,
    create_voice_input,
    delete_voice_input,
    http_base_url,
    list_voice_input,
    parse_reply,
    query_voice_input,
    update_voice_input,
    voice_id_of,
    voice_list_of,
)
from ..errors import InvalidParameterError
from .connection import USER_AGENT

#: Seconds one enrollment request may take, connect to last byte (the service
#: fetches and checks the sample inside ``create_voice``).
DEFAULT_REQUEST_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class HttpReply:
    """Status, content type and body of an HTTP reply."""

    status: int
    content_type: str | None
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would resend the Authorization header to the new host."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def send_blocking(request: EnrollmentRequest, timeout: float) -> HttpReply:
    """Send ``request`` and return the reply, whatever its status (blocking).

    Raises ``VoiceEnrollmentError`` (``status_code=None``, retryable) when no
    reply arrives. The message names the failure, never the headers.
    """
    host = urlsplit(request.url).hostname
    # A loopback server is reached directly even when a proxy is configured.
    proxies = urllib.request.ProxyHandler({} if is_loopback(host) else None)
    opener = urllib.request.build_opener(proxies, _NoRedirect)
    http_request = urllib.request.Request(
        request.url, data=request.body, headers=dict(request.headers), method="POST"
    )
    try:
        with opener.open(http_request, timeout=timeout) as response:
            return HttpReply(response.status, response.headers.get("Content-Type"), _read(response))
    except urllib.error.HTTPError as error:
        with error:
            headers: email.message.Message | None = error.headers
            content_type = headers.get("Content-Type") if headers is not None else None
            return HttpReply(error.code, content_type, _read(error))
    except TimeoutError:
        raise VoiceEnrollmentError(
            None,
            None,
            "Timeout",
            f"no reply from {_where(request.url)} within {timeout:g} s ({request.action})",
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(reason, TimeoutError):
            raise VoiceEnrollmentError(
                None,
                None,
                "Timeout",
                f"no reply from {_where(request.url)} within {timeout:g} s ({request.action})",
            ) from None
        raise VoiceEnrollmentError(
            None,
            None,
            "ConnectionError",
            f"cannot reach {_where(request.url)} ({request.action}): {type(reason).__name__}: {reason}",
        ) from None


def _read(response: Any) -> bytes:
    body = response.read(MAX_REPLY_BYTES + 1)
    return bytes(body[:MAX_REPLY_BYTES])


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


class EnrollmentClient:
    """Settings shared by the synchronous and asyncio services: where, with which key, how long.

    ``api_key``: else ``DASHSCOPE_API_KEY`` (a loopback server may need none).
    ``base_address``: the API root (``http://127.0.0.1:PORT/api/v1`` for the
    embedded server); else ``setting``, ``DASHSCOPE_HTTP_BASE_URL``, the
    region, Beijing. ``request_timeout``: seconds per request. ``headers``:
    extra HTTP headers. Other keyword arguments go to the request's
    ``parameters``, as in the SDK.
    """

    def __init__(
        self,
        api_key: str | None = None,
        workspace: str | None = None,
        model: str | None = None,
        *,
        setting_url: str | None = None,
        setting_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        base_address = kwargs.pop("base_address", None)
        timeout = kwargs.pop("request_timeout", None)
        headers = kwargs.pop("headers", None)
        self.base_url = http_base_url(base_address, setting=setting_url)
        key = api_key if api_key is not None else setting_key
        if key is None:
            key = os.environ.get("DASHSCOPE_API_KEY") or None
        self._credentials = Credentials.resolve(key, None, self.base_url)
        self.workspace = workspace
        self.model = model if model is not None else ENROLLMENT_MODEL
        if timeout is None:
            timeout = DEFAULT_REQUEST_TIMEOUT_S
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
            raise InvalidParameterError(
                f"request_timeout={timeout!r} is invalid: expected seconds, 0 < s <= 3600",
                parameter="request_timeout",
            )
        self.timeout = float(timeout)
        self._headers: dict[str, str] = dict(headers or {})
        self._parameters: dict[str, Any] = kwargs

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, model={self.model!r}, api_key=<hidden>)"

    @property
    def _secrets(self) -> tuple[str, ...]:
        return self._credentials.secret_values

    def request(self, input: Mapping[str, Any]) -> EnrollmentRequest:
        """The HTTP request for one action's ``input``."""
        secrets = self._secrets
        return build_request(
            self.base_url,
            secrets[0] if secrets else None,
            input,
            model=self.model,
            workspace=self.workspace,
            parameters=self._parameters,
            headers=self._headers,
            user_agent=USER_AGENT,
        )

    def reply(self, http: HttpReply) -> EnrollmentReply:
        """The reply read, or ``VoiceEnrollmentError`` (key never in its message)."""
        return parse_reply(http.status, http.content_type, http.body, secrets=self._secrets)

    def call_blocking(self, input: Mapping[str, Any]) -> EnrollmentReply:
        return self.reply(send_blocking(self.request(input), self.timeout))

    async def call(self, input: Mapping[str, Any]) -> EnrollmentReply:
        request = self.request(input)
        http = await asyncio.to_thread(send_blocking, request, self.timeout)
        return self.reply(http)


class AsyncVoiceEnrollmentService:
    """Create, list, query, update and delete cloned voices from asyncio.

    The SDK's ``VoiceEnrollmentService`` surface as coroutines; failures raise
    ``VoiceEnrollmentError`` (a ``CosyVoiceError``) with ``request_id``,
    ``status_code`` and ``code``. Constructor arguments as the SDK's
    (``api_key``, ``workspace``, ``model``), plus ``base_address=`` and
    ``request_timeout=`` (see ``EnrollmentClient``).
    """

    def __init__(
        self,
        api_key: str | None = None,
        workspace: str | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._client = EnrollmentClient(api_key, workspace, model, **kwargs)
        self._last_request_id: str | None = None

    def __repr__(self) -> str:
        return f"AsyncVoiceEnrollmentService({self._client.base_url!r}, api_key=<hidden>)"

    @property
    def model(self) -> str:
        return self._client.model

    async def _call(self, input: Mapping[str, Any]) -> EnrollmentReply:
        try:
            reply = await self._client.call(input)
        except VoiceEnrollmentError as error:
            self._last_request_id = error.request_id
            raise
        self._last_request_id = reply.request_id
        return reply

    async def create_voice(
        self,
        target_model: str,
        prefix: str,
        url: str,
        language_hints: Sequence[str] | None = None,
        max_prompt_audio_length: float | None = None,
        **kwargs: Any,
    ) -> str:
        """Clone the voice in the sample at ``url`` for ``target_model``; returns the voice id."""
        reply = await self._call(
            create_voice_input(target_model, prefix, url, language_hints, max_prompt_audio_length, kwargs)
        )
        return voice_id_of(reply)

    async def list_voices(
        self, prefix: str | None = None, page_index: int = 0, page_size: int = 10
    ) -> list[dict[str, Any]]:
        """One page of cloned voices (``voice_id``, ``gmt_create``, ``gmt_modified``, ``status``)."""
        return voice_list_of(await self._call(list_voice_input(prefix, page_index, page_size)))

    async def query_voice(self, voice_id: str) -> dict[str, Any]:
        """A voice's details (``target_model``, ``resource_link``, ``status``, times)."""
        return (await self._call(query_voice_input(voice_id))).output

    async def update_voice(self, voice_id: str, url: str) -> None:
        """Re-clone ``voice_id`` from the sample at ``url``."""
        await self._call(update_voice_input(voice_id, url))

    async def delete_voice(self, voice_id: str) -> None:
        """Delete ``voice_id``; it can no longer be used or queried."""
        await self._call(delete_voice_input(voice_id))

    def get_last_request_id(self) -> str | None:
        """The request id of the last reply (a failed one included)."""
        return self._last_request_id
