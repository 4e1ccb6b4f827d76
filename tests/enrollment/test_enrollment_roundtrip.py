"""A cloning round trip against the embedded server: our sync client, our asyncio client, the SDK."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import dashscope
import pytest
from dashscope.audio.tts_v2 import VoiceEnrollmentException as SdkException
from dashscope.audio.tts_v2 import VoiceEnrollmentService as SdkService

import cosyvoice_stream.sync as sync_api
from cosyvoice_stream.aio.enrollment import AsyncVoiceEnrollmentService
from cosyvoice_stream.enrollment import VoiceEnrollmentError
from cosyvoice_stream.errors import CosyVoiceError
from cosyvoice_stream.server import ServerHandle
from cosyvoice_stream.sync import VoiceEnrollmentException, VoiceEnrollmentService

from .conftest import API_KEY

_ID_FORM = r"\A{model}-{prefix}-[0-9a-f]{{32}}\Z"


def _id_form(model: str, prefix: str) -> re.Pattern[str]:
    return re.compile(_ID_FORM.format(model=re.escape(model), prefix=prefix))


@pytest.fixture
def sdk_pointed_at(enrollment_server: ServerHandle, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """``dashscope.base_http_api_url`` set to the embedded server for one test."""
    url = enrollment_server.server.enrollment_url
    monkeypatch.setattr(dashscope, "base_http_api_url", url)
    yield url


def test_sync_client_round_trip(enrollment_server: ServerHandle, samples: Path) -> None:
    server = enrollment_server.server
    service = VoiceEnrollmentService(api_key=API_KEY, base_address=server.enrollment_url)
    assert service.model == "voice-enrollment"

    voice_id = service.create_voice("cosyvoice-v3-plus", "syncvoice", (samples / "good.wav").as_uri())
    assert _id_form("cosyvoice-v3-plus", "syncvoice").match(voice_id)
    created_request = service.get_last_request_id()
    assert created_request
    assert server.voices.target_model(voice_id) == "cosyvoice-v3-plus"

    listed = service.list_voices(prefix="syncvoice")
    assert [entry["voice_id"] for entry in listed] == [voice_id]
    assert set(listed[0]) == {"voice_id", "gmt_create", "gmt_modified", "status"}
    assert listed[0]["status"] == "OK"
    assert service.get_last_request_id() not in (None, created_request)

    details = service.query_voice(voice_id)
    assert details["target_model"] == "cosyvoice-v3-plus"
    assert details["resource_link"] == (samples / "good.wav").as_uri()
    assert details["status"] == "OK"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", details["gmt_create"])

    assert service.update_voice(voice_id, (samples / "other.wav").as_uri()) is None
    assert service.query_voice(voice_id)["resource_link"] == (samples / "other.wav").as_uri()

    assert service.delete_voice(voice_id) is None
    assert server.voices.target_model(voice_id) is None
    assert service.list_voices(prefix="syncvoice") == []
    for refused in (
        lambda: service.query_voice(voice_id),
        lambda: service.update_voice(voice_id, (samples / "good.wav").as_uri()),
        lambda: service.delete_voice(voice_id),
    ):
        with pytest.raises(VoiceEnrollmentException) as info:
            refused()
        assert info.value.status_code == 400
        assert info.value.code == "InvalidParameter"
        assert "does not exist" in str(info.value)
        assert service.get_last_request_id() == info.value.request_id


def test_sync_client_uses_module_setting_and_loopback_http_sample(
    enrollment_server: ServerHandle, sample_http: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync_api, "base_http_api_url", enrollment_server.server.enrollment_url)
    monkeypatch.setattr(sync_api, "api_key", API_KEY)
    service = sync_api.VoiceEnrollmentService()
    voice_id = service.create_voice("cosyvoice-v2", "http1", f"{sample_http}/good.wav", language_hints=["en"])
    assert _id_form("cosyvoice-v2", "http1").match(voice_id)
    assert service.query_voice(voice_id)["resource_link"] == f"{sample_http}/good.wav"
    service.delete_voice(voice_id)


async def test_async_client_round_trip(enrollment_server: ServerHandle, samples: Path) -> None:
    server = enrollment_server.server
    service = AsyncVoiceEnrollmentService(api_key=API_KEY, base_address=server.enrollment_url)

    voice_id = await service.create_voice(
        "cosyvoice-v3-flash", "asyncv1", (samples / "good.wav").as_uri(), max_prompt_audio_length=10.0
    )
    assert _id_form("cosyvoice-v3-flash", "asyncv1").match(voice_id)
    assert server.voices.target_model(voice_id) == "cosyvoice-v3-flash"
    assert [v["voice_id"] for v in await service.list_voices(prefix="asyncv1")] == [voice_id]
    assert (await service.query_voice(voice_id))["target_model"] == "cosyvoice-v3-flash"
    await service.update_voice(voice_id, (samples / "other.wav").as_uri())
    assert (await service.query_voice(voice_id))["resource_link"].endswith("other.wav")
    await service.delete_voice(voice_id)
    with pytest.raises(VoiceEnrollmentError) as info:
        await service.query_voice(voice_id)
    assert isinstance(info.value, CosyVoiceError)
    assert info.value.status_code == 400 and not info.value.retryable
    assert service.get_last_request_id() == info.value.request_id


def test_official_sdk_round_trip(sdk_pointed_at: str, enrollment_server: ServerHandle, samples: Path) -> None:
    server = enrollment_server.server
    service = SdkService(api_key=API_KEY)

    voice_id = service.create_voice("cosyvoice-v2", "sdkvoice", (samples / "good.wav").as_uri())
    assert _id_form("cosyvoice-v2", "sdkvoice").match(voice_id)
    assert service.get_last_request_id()
    assert server.voices.target_model(voice_id) == "cosyvoice-v2"
    assert [v["voice_id"] for v in service.list_voices(prefix="sdkvoice")] == [voice_id]
    assert [v["voice_id"] for v in service.list_voices(page_size=100)].count(voice_id) == 1
    assert service.query_voice(voice_id)["target_model"] == "cosyvoice-v2"
    service.update_voice(voice_id, (samples / "other.wav").as_uri())
    assert service.query_voice(voice_id)["resource_link"] == (samples / "other.wav").as_uri()
    service.delete_voice(voice_id)
    with pytest.raises(SdkException) as info:
        service.query_voice(voice_id)
    assert "Status Code: 400" in str(info.value) and "does not exist" in str(info.value)


def test_voices_created_by_one_client_are_seen_by_the_others(
    sdk_pointed_at: str, enrollment_server: ServerHandle, samples: Path
) -> None:
    ours = VoiceEnrollmentService(api_key=API_KEY, base_address=sdk_pointed_at)
    theirs = SdkService(api_key=API_KEY)
    voice_id = theirs.create_voice("cosyvoice-v1", "mixed", (samples / "good.wav").as_uri())
    assert ours.query_voice(voice_id) == theirs.query_voice(voice_id)
    ours.delete_voice(voice_id)
    assert theirs.list_voices(prefix="mixed") == []


def test_list_voices_pages_newest_first(enrollment_server: ServerHandle, samples: Path) -> None:
    service = VoiceEnrollmentService(api_key=API_KEY, base_address=enrollment_server.server.enrollment_url)
    created = [
        service.create_voice("cosyvoice-v2", "paged", (samples / "good.wav").as_uri()) for _ in range(3)
    ]
    try:
        first = service.list_voices(prefix="paged", page_index=0, page_size=2)
        second = service.list_voices(prefix="paged", page_index=1, page_size=2)
        assert [v["voice_id"] for v in first + second] == list(reversed(created))
        assert service.list_voices(prefix="paged", page_index=2, page_size=2) == []
    finally:
        for voice_id in created:
            service.delete_voice(voice_id)


def test_error_str_matches_the_sdk(enrollment_server: ServerHandle) -> None:
    error = VoiceEnrollmentException("rid", 400, "InvalidParameter", "bad")
    assert str(error) == str(SdkException("rid", 400, "InvalidParameter", "bad"))
    assert (error._request_id, error._status_code, error._code, error._error_message) == (
        "rid",
        400,
        "InvalidParameter",
        "bad",
    )
