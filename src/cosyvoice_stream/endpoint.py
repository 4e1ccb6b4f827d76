"""Where to connect and with which credentials.

Resolution order follows the official SDK, but settings are read when a
client is created (not at import): ``url=`` argument, then
``DASHSCOPE_WEBSOCKET_BASE_URL``, then ``DASHSCOPE_API_REGION`` (with
``DASHSCOPE_WORKSPACE_ID`` for the workspace hosts), else Beijing.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import json
import os
import re
import time
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import AuthenticationError, InvalidParameterError
from .redact import remember_secret

BEIJING_URL = "wss://dashscope.aliyuncs.com/api-ws/v1/inference"
SINGAPORE_URL = "wss://dashscope-intl.aliyuncs.com/api-ws/v1/inference"
WORKSPACE_REGIONS = (
    "cn-beijing",
    "ap-southeast-1",
    "us-east-1",
    "cn-hongkong",
    "eu-central-1",
    "ap-northeast-1",
)
_LABEL = re.compile(r"\A[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62})\Z")
_KEY_CHARS = re.compile(r"\A[\x21-\x7e]+\Z")  # visible ASCII: no CR/LF, no spaces

TokenProvider = Callable[[], str | Awaitable[str]]


def region_url(region: str, workspace: str | None = None) -> str:
    """The WebSocket URL of a region (``cn-beijing``, ``ap-southeast-1``, ...)."""
    if not _LABEL.match(region):
        raise InvalidParameterError(f"region={region!r} is not a valid region name", parameter="region")
    if workspace:
        if not _LABEL.match(workspace):
            raise InvalidParameterError(
                f"workspace={workspace!r} is invalid: expected letters, digits, '-' or '_'",
                parameter="workspace",
            )
        return f"wss://{workspace}.{region}.maas.aliyuncs.com/api-ws/v1/inference"
    if region == "cn-beijing":
        return BEIJING_URL
    if region in ("ap-southeast-1", "intl", "singapore"):
        return SINGAPORE_URL
    raise InvalidParameterError(
        f"region={region!r} needs a workspace id (DASHSCOPE_WORKSPACE_ID) for its maas host;"
        f" known regions: {', '.join(WORKSPACE_REGIONS)}",
        parameter="region",
    )


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_url(url: str | None = None, *, region: str | None = None, workspace: str | None = None) -> str:
    """The endpoint URL, checked: ``wss://`` is required except for loopback hosts."""
    env = os.environ
    workspace = workspace or env.get("DASHSCOPE_WORKSPACE_ID") or None
    if url is None:
        url = env.get("DASHSCOPE_WEBSOCKET_BASE_URL") or None
    if url is None:
        region = region or env.get("DASHSCOPE_API_REGION") or None
        url = region_url(region, workspace) if region else BEIJING_URL
    return check_url(url)


def check_url(
    url: object,
    *,
    secure: str = "wss",
    plain: str = "ws",
    example: str = "wss://host/path",
    name: str = "url",
    parameter: str = "url",
    any_query: bool = False,
) -> str:
    """``url``, if it is safe to send a key to: ``secure``, or ``plain`` to a loopback
    host only, with no credentials in it (nor any query at all with ``any_query``).

    Errors name ``name`` and show the URL without its query or user info.
    """
    if not isinstance(url, str):
        raise InvalidParameterError(f"{name} must be a str, got {type(url).__name__}", parameter=parameter)
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise InvalidParameterError(f"{name} is not a valid URL", parameter=parameter) from None
    shown = f"{parts.scheme}://{host or ''}{parts.path}"
    query = parts.query.lower()
    if any_query and query:
        credentials, what = True, "credentials or a query"
    else:
        credentials, what = any(word in query for word in ("key", "token", "secret")), "credentials"
    if parts.username or parts.password or credentials:
        raise InvalidParameterError(
            f"{name}={shown!r}... must not carry {what}; pass api_key= (it is sent as an"
            " Authorization header)",
            parameter=parameter,
        )
    if parts.scheme not in (plain, secure) or not host:
        raise InvalidParameterError(
            f"{name}={shown!r} is invalid: expected {example} ({plain}:// only for loopback hosts)",
            parameter=parameter,
        )
    if parts.scheme == plain and not is_loopback(host):
        raise InvalidParameterError(
            f"{name}={shown!r} uses plain {plain}:// to a remote host; the API key would travel"
            f" unencrypted. Use {secure}:// (plain {plain}:// is allowed only for loopback hosts"
            " such as 127.0.0.1)",
            parameter=parameter,
        )
    return url


def check_api_key(key: object, *, name: str = "api_key") -> str:
    """Refuse keys that could break the Authorization header. Never echoes the key."""
    if not isinstance(key, str):
        raise InvalidParameterError(f"{name} must be a str, got {type(key).__name__}", parameter=name)
    if not key or not _KEY_CHARS.match(key):
        raise InvalidParameterError(
            f"{name} is empty or contains whitespace, CR/LF or non-ASCII characters (the value is not shown)",
            parameter=name,
        )
    return key


class Credentials:
    """The API key or a token provider. Its repr never shows the secret."""

    def __init__(self, api_key: str | None = None, token_provider: TokenProvider | None = None) -> None:
        if api_key is not None and token_provider is not None:
            raise InvalidParameterError("pass api_key or token_provider, not both", parameter="api_key")
        self._key = check_api_key(api_key) if api_key is not None else None
        remember_secret(self._key)  # a server may echo it: hidden from every message from now on
        self._provider = token_provider

    @classmethod
    def resolve(cls, api_key: str | None, token_provider: TokenProvider | None, url: str) -> Credentials:
        """From the arguments, else ``DASHSCOPE_API_KEY``. Loopback servers may need none."""
        if api_key is None and token_provider is None:
            api_key = os.environ.get("DASHSCOPE_API_KEY") or None
            if api_key is None and not is_loopback(urlsplit(url).hostname):
                raise AuthenticationError(
                    "no API key: pass api_key=... or set DASHSCOPE_API_KEY"
                    " (or point url= at a local server such as the embedded one)",
                    code="NoApiKey",
                )
        return cls(api_key, token_provider)

    @property
    def secret_values(self) -> tuple[str, ...]:
        return (self._key,) if self._key else ()

    async def token(self) -> str | None:
        """The bearer value for a new connection (None: connect without credentials)."""
        if self._provider is None:
            return self._key
        try:
            value = self._provider()
            if inspect.isawaitable(value):
                value = await value
        except Exception as exc:  # the provider is user code: wrap whatever it raises
            raise AuthenticationError(
                f"the token provider failed: {type(exc).__name__}",
                code="TokenProvider",
                retryable=True,
                permanent=False,
            ) from None
        token = check_api_key(value, name="token")
        remember_secret(token)
        return token

    def __repr__(self) -> str:
        kind = "token_provider" if self._provider else ("api_key" if self._key else "none")
        return f"Credentials({kind}=<hidden>)"


@dataclass
class TemporaryTokenProvider:
    """Fetches short-lived tokens (``st-...``) with the API key and refreshes them before expiry.

    Untested against the live service (CI has no network); the request is the
    one documented for ``POST /api/v1/tokens?expire_in_seconds=N``.
    """

    api_key: str
    region_host: str = "https://dashscope.aliyuncs.com"
    expire_in_seconds: int = 1800
    refresh_margin_seconds: float = 30.0

    def __post_init__(self) -> None:
        check_api_key(self.api_key)
        if not 1 <= self.expire_in_seconds <= 1800:
            raise InvalidParameterError(
                f"expire_in_seconds={self.expire_in_seconds} is invalid: expected 1..1800",
                parameter="expire_in_seconds",
            )
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"TemporaryTokenProvider(region_host={self.region_host!r}, api_key=<hidden>)"

    async def __call__(self) -> str:
        if self._token is None or time.time() > self._expires_at - self.refresh_margin_seconds:
            self._token, self._expires_at = await asyncio.to_thread(self._fetch)
        assert self._token is not None
        return self._token

    def _fetch(self) -> tuple[str, float]:
        request = urllib.request.Request(
            f"{self.region_host}/api/v1/tokens?expire_in_seconds={self.expire_in_seconds}",
            method="POST",
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.loads(response.read())
        return str(body["token"]), float(body["expires_at"])
