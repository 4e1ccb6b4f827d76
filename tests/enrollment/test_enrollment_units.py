"""The sans-I/O enrollment module, the voice store and the server wiring (config, CLI)."""

from __future__ import annotations

import argparse
import json

import pytest

from cosyvoice_stream.enrollment import (
    CUSTOMIZATION_PATH,
    VoiceEnrollmentError,
    build_request,
    check_http_url,
    cloned_voice_id,
    create_voice_input,
    http_base_url,
    list_voice_input,
    parse_reply,
    voice_id_of,
)
from cosyvoice_stream.errors import InvalidParameterError
from cosyvoice_stream.server import EmbeddedServer, ServerConfig
from cosyvoice_stream.server.cli import add_serve_arguments, config_from_args
from cosyvoice_stream.server.enrollment import EnrollmentRefused, SampleInfo, VoiceStore, check_sample
from cosyvoice_stream.voices import cloned_voice_target

from .conftest import API_KEY, wav_bytes


def test_the_key_travels_only_in_the_authorization_header() -> None:
    request = build_request(
        "http://127.0.0.1:1/api/v1/",
        API_KEY,
        create_voice_input("cosyvoice-v2", "p", "file:///x.wav", ["zh"], None, {"enable_preprocess": True}),
        workspace="ws1",
        parameters={"extra": 1},
        headers={"Authorization": "Bearer other", "X-Custom": "1"},
    )
    assert request.url == f"http://127.0.0.1:1/api/v1/{CUSTOMIZATION_PATH}"
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"
    assert request.headers["X-DashScope-WorkSpace"] == "ws1" and request.headers["X-Custom"] == "1"
    assert API_KEY.encode() not in request.body and API_KEY not in repr(request)
    body = json.loads(request.body)
    assert body == {
        "model": "voice-enrollment",
        "input": {
            "action": "create_voice",
            "target_model": "cosyvoice-v2",
            "prefix": "p",
            "url": "file:///x.wav",
            "language_hints": ["zh"],
            "enable_preprocess": True,
        },
        "parameters": {"extra": 1},
    }


def test_list_input_leaves_out_an_empty_prefix_like_the_sdk() -> None:
    assert list_voice_input(None) == {"action": "list_voice", "page_index": 0, "page_size": 10}
    assert list_voice_input("", 2, 5) == {"action": "list_voice", "page_index": 2, "page_size": 5}
    assert list_voice_input("abc")["prefix"] == "abc"


def test_unknown_action_is_refused() -> None:
    with pytest.raises(InvalidParameterError):
        build_request("http://127.0.0.1:1/api/v1", None, {"action": "clone_everything"})


def test_parse_reply() -> None:
    reply = parse_reply(
        200, "application/json", b'{"output":{"voice_id":"v"},"usage":{"count":1},"request_id":"r"}'
    )
    assert (reply.request_id, voice_id_of(reply), reply.usage) == ("r", "v", {"count": 1})
    with pytest.raises(VoiceEnrollmentError) as info:
        parse_reply(503, "text/html", b"<html>busy</html>")
    assert info.value.status_code == 503 and info.value.retryable and info.value.code == "Unknown"
    with pytest.raises(VoiceEnrollmentError) as info:
        parse_reply(200, "text/plain", b"not json")
    assert info.value.code == "ProtocolError"
    with pytest.raises(VoiceEnrollmentError):
        voice_id_of(parse_reply(200, "application/json", b'{"output":{},"request_id":"r"}'))


def test_http_base_url_resolution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DASHSCOPE_HTTP_BASE_URL", raising=False)
    monkeypatch.delenv("DASHSCOPE_API_REGION", raising=False)
    assert http_base_url() == "https://dashscope.aliyuncs.com/api/v1"
    monkeypatch.setenv("DASHSCOPE_API_REGION", "ap-southeast-1")
    assert http_base_url() == "https://dashscope-intl.aliyuncs.com/api/v1"
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "http://localhost:1/api/v1")
    assert http_base_url() == "http://localhost:1/api/v1"
    assert http_base_url(setting="http://[::1]:2/api/v1") == "http://[::1]:2/api/v1"
    assert http_base_url("http://127.0.0.1:3/api/v1", setting="x") == "http://127.0.0.1:3/api/v1"
    with pytest.raises(InvalidParameterError, match="plain http"):
        check_http_url("http://192.168.1.2/api/v1")


def test_cloned_ids_name_their_target_model() -> None:
    assert cloned_voice_id("cosyvoice-v3-plus", "my", "abc") == "cosyvoice-v3-plus-my-abc"
    assert cloned_voice_target("cosyvoice-v3.5-flash-my-abc") == "cosyvoice-v3.5-flash"
    assert cloned_voice_target("cosyvoice-v3-flash-my-abc") == "cosyvoice-v3-flash"
    assert cloned_voice_target("longxiaochun_v2") is None


def test_voice_store_target_model_and_quota() -> None:
    store = VoiceStore(max_voices=1)
    info = SampleInfo(16_000, 1, 8.0)
    voice = store.add("cosyvoice-v2", "a", "file:///a.wav", info)
    assert store.target_model(voice.voice_id) == "cosyvoice-v2"
    assert store.target_model("cosyvoice-v2-a-unknown") is None
    with pytest.raises(EnrollmentRefused, match="quota"):
        store.add("cosyvoice-v2", "b", "file:///b.wav", info)
    store.remove(voice.voice_id)
    assert store.target_model(voice.voice_id) is None and len(store) == 0


def test_check_sample_reads_the_first_channel_only() -> None:
    info = check_sample(wav_bytes(6.0, rate=48_000))
    assert (info.sample_rate, info.channels, info.duration_s) == (48_000, 1, 6.0)
    with pytest.raises(EnrollmentRefused, match="16-bit"):
        check_sample(wav_bytes(6.0, width=3))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_flags() -> None:
    config = config_from_args(_args())
    assert config.enrollment and config.enrollment_port == 8766
    config = config_from_args(_args("--enrollment-port", "0", "--no-enrollment"))
    assert not config.enrollment and config.enrollment_port == 0
    with pytest.raises(ValueError, match="enrollment_port"):
        ServerConfig(enrollment_port=70000)


async def test_server_without_enrollment_and_restart_keeps_voices() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", enrollment=False)) as server:
        with pytest.raises(RuntimeError, match="not running"):
            _ = server.enrollment_url
    server = EmbeddedServer(ServerConfig(engine="tone"))
    voice = server.voices.add("cosyvoice-v2", "keep", "file:///k.wav", SampleInfo(16_000, 1, 8.0))
    async with server:
        assert server.enrollment_url.startswith("http://127.0.0.1:")
        assert server.voices.target_model(voice.voice_id) == "cosyvoice-v2"
    with pytest.raises(RuntimeError):
        _ = server.enrollment_url
