import asyncio

import pytest

from cosyvoice_stream import AsyncSynthesizer, AuthenticationError, InvalidParameterError
from cosyvoice_stream.endpoint import (
    BEIJING_URL,
    SINGAPORE_URL,
    Credentials,
    check_api_key,
    resolve_url,
)


def test_url_resolution_order(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_url() == BEIJING_URL
    monkeypatch.setenv("DASHSCOPE_API_REGION", "ap-southeast-1")
    assert resolve_url() == SINGAPORE_URL
    monkeypatch.setenv("DASHSCOPE_WORKSPACE_ID", "ws1")
    monkeypatch.setenv("DASHSCOPE_API_REGION", "eu-central-1")
    assert resolve_url() == "wss://ws1.eu-central-1.maas.aliyuncs.com/api-ws/v1/inference"
    monkeypatch.setenv("DASHSCOPE_WEBSOCKET_BASE_URL", "wss://env.example/api-ws/v1/inference")
    assert resolve_url() == "wss://env.example/api-ws/v1/inference"
    assert resolve_url("ws://127.0.0.1:9/x") == "ws://127.0.0.1:9/x"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("ws://example.com/x", "plain ws://"),
        ("http://127.0.0.1/x", "expected wss://"),
        ("wss://user:pw@example.com/x", "credentials"),
        ("wss://example.com/x?apikey=1", "credentials"),
    ],
)
def test_bad_urls_refused(url: str, needle: str) -> None:
    with pytest.raises(InvalidParameterError, match=needle):
        resolve_url(url)


def test_workspace_and_region_must_be_host_labels() -> None:
    with pytest.raises(InvalidParameterError, match="workspace"):
        resolve_url(region="eu-central-1", workspace="evil.com/")
    with pytest.raises(InvalidParameterError, match="needs a workspace"):
        resolve_url(region="eu-central-1")


@pytest.mark.parametrize("key", ["a\r\nX-Injected: 1", "with space", "", "ключ"])
def test_header_breaking_keys_refused_without_echo(key: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        check_api_key(key)
    if key:
        assert key not in str(info.value)


def test_key_from_environment_and_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-env-secret")
    synth = AsyncSynthesizer()
    assert "sk-env-secret" not in repr(synth)
    assert asyncio.run(synth._credentials.token()) == "sk-env-secret"


def test_token_provider_sync_async_and_failing() -> None:
    async def async_provider() -> str:
        return "st-token"

    assert asyncio.run(Credentials(token_provider=lambda: "st-sync").token()) == "st-sync"
    assert asyncio.run(Credentials(token_provider=async_provider).token()) == "st-token"

    def broken() -> str:
        raise RuntimeError("sk-leaky-secret in the message")

    with pytest.raises(AuthenticationError) as info:
        asyncio.run(Credentials(token_provider=broken).token())
    assert "sk-leaky-secret" not in str(info.value) and info.value.retryable
    with pytest.raises(InvalidParameterError, match="token"):
        asyncio.run(Credentials(token_provider=lambda: "bad\ntoken").token())
