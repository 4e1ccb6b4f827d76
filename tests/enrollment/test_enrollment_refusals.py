"""Bad input is refused with clear errors, by the server and by the clients; the key never leaks."""

from __future__ import annotations

import http.server
import inspect
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dashscope
import pytest
from dashscope.audio.tts_v2 import VoiceEnrollmentException as SdkException
from dashscope.audio.tts_v2 import VoiceEnrollmentService as SdkService

from cosyvoice_stream.aio.enrollment import AsyncVoiceEnrollmentService
from cosyvoice_stream.enrollment import VoiceEnrollmentError
from cosyvoice_stream.errors import InvalidParameterError
from cosyvoice_stream.server import ServerHandle
from cosyvoice_stream.sync import VoiceEnrollmentException, VoiceEnrollmentService

from .conftest import API_KEY


@pytest.fixture
def service(enrollment_server: ServerHandle) -> VoiceEnrollmentService:
    return VoiceEnrollmentService(api_key=API_KEY, base_address=enrollment_server.server.enrollment_url)


def _refusal(call: Callable[[], object]) -> VoiceEnrollmentException:
    with pytest.raises(VoiceEnrollmentException) as info:
        call()
    error = info.value
    for text in (str(error), repr(error), error.error_message, *map(str, error.args)):
        assert API_KEY not in text
    return error


@pytest.mark.parametrize("prefix", ["my_voice", "my-voice", "abcdefghijk", "", "声音", "a b", "x!"])
def test_bad_prefix_is_refused(service: VoiceEnrollmentService, samples: Path, prefix: str) -> None:
    error = _refusal(lambda: service.create_voice("cosyvoice-v2", prefix, (samples / "good.wav").as_uri()))
    assert error.status_code == 400 and error.code == "InvalidParameter"
    assert "prefix" in error.error_message and "1 to 10 letters or digits" in error.error_message


def test_ten_character_prefix_is_accepted(service: VoiceEnrollmentService, samples: Path) -> None:
    voice_id = service.create_voice("cosyvoice-v2", "Abcde12345", (samples / "good.wav").as_uri())
    assert voice_id.startswith("cosyvoice-v2-Abcde12345-")
    service.delete_voice(voice_id)


@pytest.mark.parametrize(
    "target_model", ["sambert-zhichu-v1", "cosyvoice-v9", "qwen-tts", "voice-enrollment", "", "COSYVOICE-V2"]
)
def test_bad_target_model_is_refused(
    service: VoiceEnrollmentService, samples: Path, target_model: str
) -> None:
    error = _refusal(lambda: service.create_voice(target_model, "tm", (samples / "good.wav").as_uri()))
    assert error.status_code == 400
    assert "target_model" in error.error_message and "cosyvoice-v3-flash" in error.error_message


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/sample.wav",
        "https://10.0.0.1/sample.wav",
        "http://127.0.0.1.example.com/sample.wav",
        "ftp://127.0.0.1/sample.wav",
        "file://otherhost/tmp/sample.wav",
        "not a url",
    ],
)
def test_non_loopback_or_unsupported_url_is_refused(service: VoiceEnrollmentService, url: str) -> None:
    error = _refusal(lambda: service.create_voice("cosyvoice-v2", "urls", url))
    assert error.status_code == 400
    assert "refused" in error.error_message or "cannot be read" in error.error_message
    assert service.list_voices(prefix="urls") == []


def test_remote_url_refusal_names_the_rule(service: VoiceEnrollmentService) -> None:
    error = _refusal(lambda: service.create_voice("cosyvoice-v2", "urls", "http://example.com/a.wav?sig=x"))
    assert "only from loopback hosts" in error.error_message
    assert "sig=x" not in error.error_message


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("short.wav", "Audio.AudioShortError", "at least 5 s"),
        ("long.wav", "Audio.AudioLongError", "at most 60 s"),
        ("lowrate.wav", "Audio.FormatError", "at least 16000 Hz"),
        ("silent.wav", "Audio.SilentAudioError", "silent"),
        ("noise.bin", "Audio.DecoderError", "not decodable audio"),
        ("song.mp3", "Audio.FormatError", "decodes only WAV"),
        ("missing.wav", "InvalidParameter", "cannot be read"),
    ],
)
def test_bad_audio_is_refused(
    service: VoiceEnrollmentService, samples: Path, name: str, code: str, words: str
) -> None:
    error = _refusal(lambda: service.create_voice("cosyvoice-v2", "audio", (samples / name).as_uri()))
    assert (error.status_code, error.code) == (400, code)
    assert words in error.error_message


def test_missing_http_sample_is_refused(service: VoiceEnrollmentService, sample_http: str) -> None:
    error = _refusal(lambda: service.create_voice("cosyvoice-v2", "audio", f"{sample_http}/nothing.wav"))
    assert "HTTP 404" in error.error_message


def test_bad_update_keeps_the_old_sample(service: VoiceEnrollmentService, samples: Path) -> None:
    voice_id = service.create_voice("cosyvoice-v2", "upd", (samples / "good.wav").as_uri())
    try:
        _refusal(lambda: service.update_voice(voice_id, "http://example.com/x.wav"))
        _refusal(lambda: service.update_voice(voice_id, (samples / "short.wav").as_uri()))
        assert service.query_voice(voice_id)["resource_link"] == (samples / "good.wav").as_uri()
    finally:
        service.delete_voice(voice_id)


@pytest.mark.parametrize("voice_id", ["cosyvoice-v2-nobody-0123", "longxiaochun_v2", ""])
def test_unknown_voice_id_is_refused(service: VoiceEnrollmentService, samples: Path, voice_id: str) -> None:
    for call in (
        lambda: service.query_voice(voice_id),
        lambda: service.update_voice(voice_id, (samples / "good.wav").as_uri()),
        lambda: service.delete_voice(voice_id),
    ):
        error = _refusal(call)
        assert error.status_code == 400
        assert ("does not exist" if voice_id else "voice_id is required") in error.error_message


@pytest.mark.parametrize(
    ("hints", "length", "words"),
    [(["xx"], None, "language_hints"), ("en", None, "language_hints"), (None, 0, "max_prompt_audio_length")],
)
def test_bad_options_are_refused(
    service: VoiceEnrollmentService, samples: Path, hints: object, length: object, words: str
) -> None:
    error = _refusal(
        lambda: service.create_voice(
            "cosyvoice-v3-plus",
            "opts",
            (samples / "good.wav").as_uri(),
            language_hints=hints,  # type: ignore[arg-type]
            max_prompt_audio_length=length,  # type: ignore[arg-type]
        )
    )
    assert words in error.error_message


def test_bad_list_paging_is_refused(service: VoiceEnrollmentService) -> None:
    assert "page_size" in _refusal(lambda: service.list_voices(page_size=0)).error_message
    assert "page_index" in _refusal(lambda: service.list_voices(page_index=-1)).error_message
    assert "prefix" in _refusal(lambda: service.list_voices(prefix="no_way!")).error_message


def test_wrong_enrollment_model_is_refused(enrollment_server: ServerHandle) -> None:
    service = VoiceEnrollmentService(
        api_key=API_KEY, base_address=enrollment_server.server.enrollment_url, model="qwen-voice-enrollment"
    )
    error = _refusal(service.list_voices)
    assert "voice-enrollment" in error.error_message


def test_wrong_or_missing_key_is_refused_without_echo(enrollment_server: ServerHandle) -> None:
    url = enrollment_server.server.enrollment_url
    wrong = "sk-wrong-key-that-must-not-show"
    error = _refusal(lambda: VoiceEnrollmentService(api_key=wrong, base_address=url).list_voices())
    assert (error.status_code, error.code) == (401, "InvalidApiKey")
    assert error.permanent and not error.retryable
    assert wrong not in str(error) and wrong not in repr(error)
    error = _refusal(lambda: VoiceEnrollmentService(base_address=url).list_voices())
    assert error.status_code == 401


def test_the_sdk_sees_the_same_refusals(
    enrollment_server: ServerHandle, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dashscope, "base_http_api_url", enrollment_server.server.enrollment_url)
    service = SdkService(api_key=API_KEY)
    cases = [
        (
            lambda: service.create_voice("cosyvoice-v2", "bad_prefix", (samples / "good.wav").as_uri()),
            "prefix",
        ),
        (lambda: service.create_voice("cosyvoice-v2", "remote", "http://example.com/a.wav"), "loopback"),
        (lambda: service.create_voice("sambert-v1", "tm", (samples / "good.wav").as_uri()), "target_model"),
        (lambda: service.query_voice("cosyvoice-v2-nobody-00"), "does not exist"),
    ]
    for call, words in cases:
        with pytest.raises(SdkException) as info:
            call()
        assert "Status Code: 400" in str(info.value) and words in str(info.value)
        assert API_KEY not in str(info.value)


def test_a_refusal_before_the_body_is_read_leaves_the_kept_alive_connection_usable(
    enrollment_server: ServerHandle, samples: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK pools its connections: a 401 sent before the body was read must not poison the next request.
    monkeypatch.setattr(dashscope, "base_http_api_url", enrollment_server.server.enrollment_url)
    for _ in range(3):
        with pytest.raises(SdkException) as info:
            SdkService(api_key="sk-wrong").create_voice(
                "cosyvoice-v2", "pool", (samples / "good.wav").as_uri()
            )
        assert "Status Code: 401" in str(info.value)
        assert isinstance(SdkService(api_key=API_KEY).list_voices(prefix="pool"), list)


async def test_the_asyncio_client_sees_the_refusals(enrollment_server: ServerHandle, samples: Path) -> None:
    service = AsyncVoiceEnrollmentService(
        api_key=API_KEY, base_address=enrollment_server.server.enrollment_url
    )
    with pytest.raises(VoiceEnrollmentError) as info:
        await service.create_voice("cosyvoice-v2", "bad-one", (samples / "good.wav").as_uri())
    assert info.value.status_code == 400 and "prefix" in info.value.message
    with pytest.raises(VoiceEnrollmentError) as info:
        await service.create_voice("cosyvoice-v2", "remote", "https://example.com/a.wav")
    assert "only from loopback hosts" in info.value.message
    assert API_KEY not in str(info.value)


def test_no_log_line_shows_the_key(
    enrollment_server: ServerHandle, samples: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = enrollment_server.server.enrollment_url
    good = VoiceEnrollmentService(api_key=API_KEY, base_address=url)
    voice_id = good.create_voice("cosyvoice-v2", "logs", (samples / "good.wav").as_uri())
    good.delete_voice(voice_id)
    _refusal(lambda: good.query_voice(voice_id))
    _refusal(lambda: VoiceEnrollmentService(api_key=API_KEY + "x", base_address=url).list_voices())
    assert caplog.records and "customization" in caplog.text
    assert API_KEY not in caplog.text


# -- client-side checks and transport failures --------------------------------
@pytest.mark.parametrize(
    "base",
    [
        "http://example.com/api/v1",
        "ws://127.0.0.1:1/api/v1",
        "https://user:pw@host/api/v1",
        "https://h/api?key=1",
    ],
)
def test_unsafe_endpoint_is_refused_before_sending(base: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        VoiceEnrollmentService(api_key=API_KEY, base_address=base)
    assert API_KEY not in str(info.value) and "pw" not in str(info.value)


def test_no_key_for_a_remote_endpoint_is_an_error() -> None:
    from cosyvoice_stream.errors import AuthenticationError

    with pytest.raises(AuthenticationError):
        VoiceEnrollmentService(base_address="https://dashscope.aliyuncs.com/api/v1")


def test_repr_hides_the_key() -> None:
    for service in (
        VoiceEnrollmentService(api_key=API_KEY, base_address="http://127.0.0.1:9/api/v1"),
        AsyncVoiceEnrollmentService(api_key=API_KEY, base_address="http://127.0.0.1:9/api/v1"),
    ):
        assert API_KEY not in repr(service) and "<hidden>" in repr(service)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_unreachable_server_is_a_retryable_enrollment_error() -> None:
    service = VoiceEnrollmentService(
        api_key=API_KEY, base_address=f"http://127.0.0.1:{_closed_port()}/api/v1", request_timeout=5
    )
    error = _refusal(service.list_voices)
    assert error.status_code is None and error.code == "ConnectionError" and error.retryable
    assert "127.0.0.1" in error.error_message and "list_voice" in error.error_message


class _EchoingHandler(http.server.BaseHTTPRequestHandler):
    """A hostile server that echoes the Authorization header back in its error."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        key = auth.partition(" ")[2]
        body = json.dumps(
            {"request_id": f"rid-{key}", "code": f"Bad{key}", "message": f"you sent {auth} and {key} " * 100}
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def echoing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoingHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_key_echoed_by_the_server_never_reaches_the_error(echoing_server: str) -> None:
    service = VoiceEnrollmentService(api_key=API_KEY, base_address=echoing_server)
    error = _refusal(service.list_voices)
    assert error.status_code == 400
    assert "<redacted>" in error.error_message
    assert len(error.error_message) <= 510
    assert API_KEY not in (service.get_last_request_id() or "")
    assert API_KEY not in (error.code or "")


def test_the_surface_matches_the_sdk() -> None:
    for name in (
        "create_voice",
        "list_voices",
        "query_voice",
        "update_voice",
        "delete_voice",
        "get_last_request_id",
    ):
        ours = inspect.signature(getattr(VoiceEnrollmentService, name))
        theirs = inspect.signature(getattr(SdkService, name))
        assert [(p.name, p.kind, p.default) for p in ours.parameters.values()] == [
            (p.name, p.kind, p.default) for p in theirs.parameters.values()
        ], name
    ours_init = inspect.signature(VoiceEnrollmentService.__init__).parameters
    theirs_init = inspect.signature(SdkService.__init__).parameters
    assert [(p.name, p.default) for p in ours_init.values()] == [
        (p.name, p.default) for p in theirs_init.values()
    ]
    assert list(inspect.signature(VoiceEnrollmentException.__init__).parameters)[:5] == list(
        inspect.signature(SdkException.__init__).parameters
    )
