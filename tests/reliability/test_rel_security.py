"""Security: secrets never leak (logs at every level, reprs, exception messages, metrics),
TLS verification is on and cannot be turned off silently, plain ws:// only for loopback,
header-breaking keys are refused, and the embedded server binds loopback, checks keys,
limits message sizes and tasks per connection, and survives a fuzzing client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
import string
from typing import Any

import pytest
from reliability_support import TcpProxy, drive, self_signed_cert, tags_of, until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cosyvoice_stream import (
    AsyncSynthesizer,
    AuthenticationError,
    ConnectionLostError,
    CosyVoiceError,
    InvalidParameterError,
)
from cosyvoice_stream.server import EmbeddedServer, Fault, ServerConfig

SECRET = "sk-rel-SECRET-0123456789abcdef"
WRONG = "sk-rel-WRONGKEY-fedcba987654"
TOKEN = "st-rel-TOKEN-aaaabbbbccccdddd"
SECRETS = (SECRET, WRONG, TOKEN)


# -- secrets never leak ---------------------------------------------------------------------


def everything_logged(caplog: pytest.LogCaptureFixture, extra: list[str]) -> str:
    """Every captured record, formatted and raw (message, args, exception), plus ``extra``."""
    parts = [caplog.text]
    for record in caplog.records:
        parts += [str(record.msg), repr(record.args), record.getMessage(), str(record.exc_text or "")]
        if record.exc_info and record.exc_info[1] is not None:
            parts += [str(record.exc_info[1]), repr(record.exc_info[1])]
    return "\n".join(parts + extra)


def describe(error: BaseException | None) -> list[str]:
    if error is None:
        return []
    return [str(error), repr(error), repr(error.args), repr(vars(error)), str(error.__cause__ or "")]


async def test_no_secret_in_logs_reprs_errors_or_metrics(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loguru import logger as loguru_logger

    caplog.set_level(logging.DEBUG)
    loguru_lines: list[str] = []
    sink = loguru_logger.add(lambda message: loguru_lines.append(str(message)), level="TRACE")
    seen: list[str] = []
    config = ServerConfig(engine="tone", api_keys=frozenset({SECRET, TOKEN}))
    try:
        async with EmbeddedServer(config) as server:
            # the core, with the key from the environment
            monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
            synth = AsyncSynthesizer(url=server.url, word_timestamp_enabled=True, prestart=False)
            monkeypatch.delenv("DASHSCOPE_API_KEY")
            seen += [repr(synth), str(synth), repr(synth.pool), repr(synth.options), repr(synth.pool_stats)]
            result = await asyncio.wait_for(synth.synthesize_audio("Hello secret world."), 5)
            seen += [repr(m) for m in result.metrics] + [repr(result.words)]
            stream = synth.stream()
            seen.append(repr(stream))
            stream.push_text("A stream that is cancelled")
            await stream.cancel()
            for fault in (
                Fault("fail_task", code="InvalidParameter", message="[tts:]Engine return error code: 418"),
                Fault("drop", stage="audio", after_frames=1),
                Fault("garbage", payload="malformed_json", after_frames=1),
            ):
                server.add_fault(fault)
                out = await drive(synth.synthesize("one two three four."), 5)
                assert isinstance(out.error, CosyVoiceError)
                seen += describe(out.error)
            await synth.aclose()
            # a wrong key, and a token from a provider
            async with AsyncSynthesizer(url=server.url, api_key=WRONG) as wrong:
                seen.append(repr(wrong))
                out = await drive(wrong.synthesize("Hi."), 5)
                assert isinstance(out.error, AuthenticationError)
                seen += describe(out.error)
            async with AsyncSynthesizer(url=server.url, token_provider=lambda: TOKEN) as tokened:
                seen.append(repr(tokened))
                assert (await asyncio.wait_for(tokened.synthesize_audio("Token."), 5)).audio
            # the SDK-style API (blocking: on a worker thread while this loop serves)
            from cosyvoice_stream.sync import AudioFormat, SpeechSynthesizer

            sdk = SpeechSynthesizer(
                "cosyvoice-v3-flash",
                "longanyang",
                AudioFormat.PCM_16000HZ_MONO_16BIT,
                url=server.url,
                api_key=SECRET,
            )
            seen.append(repr(sdk))
            assert await asyncio.wait_for(asyncio.to_thread(sdk.call, "Hello from the SDK."), 10)
            seen += [repr(sdk.get_response()), repr(sdk.get_last_request_id())]
            bad_sdk = SpeechSynthesizer("cosyvoice-v3-flash", "longanyang", url=server.url, api_key=WRONG)
            with pytest.raises(AuthenticationError) as info:
                await asyncio.wait_for(asyncio.to_thread(bad_sdk.call, "Hi."), 10)
            seen += [*describe(info.value), repr(bad_sdk)]
            # Pipecat: frames (audio, metrics, errors) and the service itself
            frames = await pipecat_run(server.url, SECRET)
            assert any("MetricsFrame" in f for f in frames) and any("TTSAudioRawFrame" in f for f in frames)
            seen += frames
            frames = await pipecat_run(server.url, WRONG)
            assert any("ErrorFrame" in f for f in frames)
            seen += frames
            # LiveKit: metrics events, errors and the TTS itself
            events = await livekit_run(server.url, SECRET)
            assert any("TTSMetrics" in e for e in events)
            seen += events
            events = await livekit_run(server.url, WRONG)
            assert any("APIStatusError" in e for e in events)
            seen += events
    finally:
        loguru_logger.remove(sink)
    text = everything_logged(caplog, seen + loguru_lines)
    # The capture is real: the handshakes (with their Authorization headers) were logged.
    assert "GET /api-ws/v1/inference" in text and "authorization" in text.lower()
    assert any(
        r.levelno == logging.DEBUG and r.name.startswith("cosyvoice_stream.server") for r in caplog.records
    )
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked"
        assert secret[8:] not in text  # nor a recognisable part of it


async def pipecat_run(url: str, key: str) -> list[str]:
    from pipecat.frames.frames import TTSSpeakFrame
    from pipecat.pipeline.worker import PipelineParams
    from pipecat.tests.utils import run_test
    from pipecat_cosyvoice import CosyVoiceTTSService

    service = CosyVoiceTTSService(url=url, api_key=key)
    seen = [repr(service), str(service)]
    down, up = await asyncio.wait_for(
        run_test(
            service,
            frames_to_send=[TTSSpeakFrame("Hello from Pipecat.")],
            pipeline_params=PipelineParams(
                audio_out_sample_rate=16000, enable_metrics=True, enable_usage_metrics=True
            ),
        ),
        15,
    )
    return seen + [repr(frame) for frame in [*down, *up]]


async def livekit_run(url: str, key: str) -> list[str]:
    from livekit.agents import APIConnectOptions, APIError
    from livekit.plugins import cosyvoice

    engine = cosyvoice.TTS(base_url=url, api_key=key)
    seen = [repr(engine), str(engine)]
    engine.on("metrics_collected", lambda metrics: seen.append(repr(metrics)))
    engine.on("error", lambda error: seen.append(repr(error)))
    try:
        async with engine.synthesize(
            "Hello from LiveKit.", conn_options=APIConnectOptions(max_retry=0)
        ) as stream:
            async for event in stream:
                seen.append(repr(event.request_id))
    except APIError as error:
        seen += describe(error)
    finally:
        await engine.aclose()
    return seen


# -- TLS ------------------------------------------------------------------------------------


@pytest.fixture
async def tls_front(server: EmbeddedServer, tmp_path):
    """wss://localhost:PORT: a TLS-terminating proxy (self-signed certificate) in front of the server."""
    cert, key = self_signed_cert(str(tmp_path))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    async with TcpProxy(server.port, ssl=context) as proxy:
        yield server, proxy, cert


async def test_tls_certificate_is_verified(tls_front, monkeypatch: pytest.MonkeyPatch) -> None:
    server, proxy, cert = tls_front
    url = f"wss://localhost:{proxy.port}/api-ws/v1/inference"
    # Untrusted certificate: refused, with the reason.
    async with AsyncSynthesizer(url=url, api_key=SECRET) as synth:
        out = await drive(synth.synthesize("Hi."), 5)
    assert isinstance(out.error, ConnectionLostError), repr(out.error)
    assert "CERTIFICATE_VERIFY_FAILED" in str(out.error) and out.audio == b""
    # Permanent: the certificate will not verify on the next attempt either (LiveKit must not retry).
    assert out.error.retryable is False and out.error.permanent is True
    assert server.connections_opened == 0
    # Trusting the certificate the documented way (SSL_CERT_FILE) makes it work: the check is real.
    monkeypatch.setenv("SSL_CERT_FILE", cert)
    async with AsyncSynthesizer(url=url, api_key=SECRET) as synth:
        out = await drive(synth.synthesize("Hi."), 5)
    assert out.error is None and out.audio
    # ... and the host name is checked too: the certificate is for localhost, not 127.0.0.1.
    async with AsyncSynthesizer(url=f"wss://127.0.0.1:{proxy.port}/x", api_key=SECRET) as synth:
        out = await drive(synth.synthesize("Hi."), 5)
    assert isinstance(out.error, ConnectionLostError) and "127.0.0.1" in str(out.error), repr(out.error)


@pytest.mark.parametrize("option", ["ssl", "verify", "verify_ssl", "ssl_context", "insecure"])
def test_tls_verification_cannot_be_switched_off(option: str) -> None:
    """No constructor argument turns verification off (an unknown keyword is an error, not ignored)."""
    with pytest.raises(TypeError):
        AsyncSynthesizer(
            url="wss://dashscope.aliyuncs.com/api-ws/v1/inference", api_key=SECRET, **{option: False}
        )


def test_sync_api_tls_verification_cannot_be_switched_off() -> None:
    from cosyvoice_stream.sync import SpeechSynthesizer

    with pytest.raises(TypeError):
        SpeechSynthesizer("cosyvoice-v3-flash", "longanyang", api_key=SECRET, sslopt={"cert_reqs": 0})  # type: ignore[call-arg]


# -- plain ws:// only for loopback --------------------------------------------------------------

LOOPBACK = [
    "ws://127.0.0.1:9/x",
    "ws://127.0.0.2:9/x",
    "ws://localhost:9/x",
    "ws://LOCALHOST:9/x",
    "ws://[::1]:9/x",
]
REMOTE = [
    "ws://dashscope.aliyuncs.com/api-ws/v1/inference",
    "ws://10.0.0.1/x",
    "ws://192.168.1.10:8765/x",
    "ws://0.0.0.0:8765/x",
    "ws://localhost.example.com/x",
    "ws://127.0.0.1.nip.io/x",
    "ws://127.0.0.1@example.com/x",
    "ws://[::ffff:10.0.0.1]/x",
]


@pytest.mark.parametrize("url", LOOPBACK)
def test_plain_ws_is_allowed_for_loopback(url: str) -> None:
    assert AsyncSynthesizer(url=url).url == url


@pytest.mark.parametrize("url", REMOTE)
def test_plain_ws_is_refused_for_remote_hosts(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidParameterError, match="url"):
        AsyncSynthesizer(url=url, api_key=SECRET)
    monkeypatch.setenv("DASHSCOPE_WEBSOCKET_BASE_URL", url)  # the environment is checked the same way
    with pytest.raises(InvalidParameterError, match="url"):
        AsyncSynthesizer(api_key=SECRET)


def test_plain_ws_is_refused_for_remote_hosts_on_every_surface() -> None:
    from livekit.plugins import cosyvoice
    from pipecat_cosyvoice import CosyVoiceTTSService

    from cosyvoice_stream.sync import SpeechSynthesizer

    url = REMOTE[0]
    for make in (
        lambda: SpeechSynthesizer("cosyvoice-v3-flash", "longanyang", url=url, api_key=SECRET),
        lambda: CosyVoiceTTSService(url=url, api_key=SECRET),
        lambda: cosyvoice.TTS(base_url=url, api_key=SECRET),
    ):
        with pytest.raises(InvalidParameterError, match="wss://"):
            make()


def test_refused_url_does_not_echo_a_key_it_carries() -> None:
    with pytest.raises(InvalidParameterError) as info:
        AsyncSynthesizer(url=f"ws://example.com/api-ws/v1/inference?api_key={SECRET}", api_key=SECRET)
    assert SECRET not in str(info.value)


# -- header-breaking keys ---------------------------------------------------------------------

BAD_KEYS = [
    pytest.param("sk-abc\r\nX-Injected: 1", id="crlf"),
    pytest.param("sk-abc\nX-Injected: 1", id="lf"),
    pytest.param("sk-abc\rX", id="cr"),
    pytest.param("sk-abc\x00", id="nul"),
    pytest.param("sk-abc def", id="space"),
    pytest.param("sk-abc\tdef", id="tab"),
    pytest.param("sk-abc\x7f", id="del"),
    pytest.param("sk-abcé", id="non-ascii"),
    pytest.param("sk-abc\u2028", id="line-separator"),
    pytest.param("", id="empty"),
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_header_breaking_key_is_refused_everywhere(
    server: EmbeddedServer, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from livekit.plugins import cosyvoice
    from pipecat_cosyvoice import CosyVoiceTTSService

    import cosyvoice_stream.sync as sdk

    makers = [
        lambda: AsyncSynthesizer(url=server.url, api_key=key),
        lambda: sdk.SpeechSynthesizer("cosyvoice-v3-flash", "longanyang", url=server.url, api_key=key),
        lambda: CosyVoiceTTSService(url=server.url, api_key=key),
        lambda: cosyvoice.TTS(base_url=server.url, api_key=key),
    ]
    for make in makers:
        with pytest.raises(InvalidParameterError) as info:
            make()
        assert "api_key" in str(info.value)
        assert not key or key not in str(info.value)
    if key and "\x00" not in key:  # from the environment and the SDK's module setting too
        monkeypatch.setenv("DASHSCOPE_API_KEY", key)
        with pytest.raises(InvalidParameterError, match="api_key"):
            AsyncSynthesizer(url=server.url)
        monkeypatch.delenv("DASHSCOPE_API_KEY")
        monkeypatch.setattr(sdk, "api_key", key)
        with pytest.raises(InvalidParameterError, match="api_key"):
            sdk.SpeechSynthesizer("cosyvoice-v3-flash", "longanyang", url=server.url)
    assert server.connections_opened == 0


# -- the embedded server ------------------------------------------------------------------------


async def test_server_binds_loopback_by_default(server: EmbeddedServer) -> None:
    from cosyvoice_stream.cli import build_parser

    assert ServerConfig().host == "127.0.0.1"
    assert build_parser().parse_args(["serve"]).host == "127.0.0.1"
    assert server.url.startswith("ws://127.0.0.1:")
    # Not reachable on another address of this machine (when it has one).
    others = set()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET: no packet is sent for UDP connect
            others.add(probe.getsockname()[0])
        except OSError:
            pass
    others = {a for a in others if not a.startswith("127.") and a != "0.0.0.0"}
    if not others:
        pytest.skip("this machine has no non-loopback IPv4 address")
    for address in others:
        with pytest.raises(OSError):
            await asyncio.wait_for(asyncio.open_connection(address, server.port), 2)


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": f"Bearer {WRONG}"}, 403),
        ({"Authorization": f"Basic {SECRET}"}, 403),
        ({"Authorization": SECRET}, 403),
        ({"Authorization": f"Bearer {SECRET}x"}, 403),
        ({"Authorization": f"Bearer {SECRET}"}, 101),
    ],
    ids=["none", "wrong", "basic-scheme", "no-scheme", "longer", "right"],
)
async def test_server_checks_keys_when_started_with_them(headers: dict[str, str], status: int) -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", api_keys=frozenset({SECRET}))) as server:
        if status == 101:
            async with connect(server.url, additional_headers=headers) as ws:
                assert ws.response.status_code == 101
        else:
            with pytest.raises(InvalidStatus) as info:
                await asyncio.wait_for(connect(server.url, additional_headers=headers), 5)
            assert info.value.response.status_code == status
            assert SECRET not in bytes(info.value.response.body or b"").decode()
        assert server.connections_opened == (1 if status == 101 else 0)


def run_task(task_id: str, **parameters: Any) -> str:
    params = {"voice": "longanyang", "format": "pcm", "sample_rate": 16000, **parameters}
    payload = {"task_group": "audio", "task": "tts", "function": "SpeechSynthesizer", "model": "cosyvoice-v3-flash",
               "parameters": params, "input": {}}  # fmt: skip
    return json.dumps(
        {"header": {"action": "run-task", "task_id": task_id, "streaming": "duplex"}, "payload": payload}
    )


def action(name: str, task_id: str, text: str | None = None) -> str:
    data = {"text": text} if text is not None else {}
    return json.dumps(
        {"header": {"action": name, "task_id": task_id, "streaming": "duplex"}, "payload": {"input": data}}
    )


async def next_event(ws: Any, limit: float = 5.0) -> tuple[dict[str, Any] | None, bytes | None]:
    message = await asyncio.wait_for(ws.recv(), limit)
    if isinstance(message, bytes):
        return None, message
    return json.loads(message), None


async def test_server_limits_message_size() -> None:
    async with EmbeddedServer(ServerConfig(engine="tone", max_message_bytes=20_000)) as server:
        async with connect(server.url, max_size=None) as ws:
            # Just under the limit: served.
            await ws.send(run_task("a" * 32, padding="p" * 19_000))
            event, _ = await next_event(ws)
            assert event is not None and event["header"]["event"] == "task-started"
            # Over it: the connection is closed with 1009 (message too big), nothing is parsed.
            await ws.send(action("continue-task", "a" * 32, "x" * 20_001))
            with pytest.raises(ConnectionClosed):
                while True:
                    await next_event(ws)
            assert ws.close_code == 1009
        assert server.tasks[0].texts == []
        await until(lambda: server.active_connections == 0, 5, "the server to drop the connection")


async def test_server_runs_one_task_per_connection() -> None:
    """A second run-task on a busy connection ends the first; binary frames carry no task id,
    so two tasks' audio must never interleave on one connection."""
    async with EmbeddedServer(ServerConfig(engine="tone", rtf=1.0, chunk_ms=20)) as server:
        async with connect(server.url) as ws:
            first, second = "1" * 32, "2" * 32
            await ws.send(run_task(first))
            assert (await next_event(ws))[0]["header"]["event"] == "task-started"  # type: ignore[index]
            await ws.send(action("continue-task", first, "one two three four five six seven eight."))
            await ws.send(action("finish-task", first))
            _, audio = await next_event(ws)
            while audio is None:
                _, audio = await next_event(ws)
            await ws.send(run_task(second))
            await ws.send(action("continue-task", first, "a straggler for the old task."))
            after: list[bytes] = []
            started = False
            while True:
                event, audio = await next_event(ws)
                if event is not None:
                    if event["header"]["task_id"] == second and event["header"]["event"] == "task-started":
                        started = True
                        await ws.send(action("continue-task", second, "Two."))
                        await ws.send(action("finish-task", second))
                    if event["header"]["task_id"] == second and event["header"]["event"] == "task-finished":
                        break
                    assert event["header"]["event"] != "task-failed", event
                elif started:
                    after.append(audio)  # type: ignore[arg-type]
        records = {t.task_id: t for t in server.tasks}
        assert records[first].state == "aborted" and records[second].state == "finished"
        assert records[first].texts == [
            "one two three four five six seven eight."
        ]  # the straggler was dropped
        assert tags_of(b"".join(after)) == {records[second].tag}
        assert len(b"".join(after)) == records[second].audio_bytes_sent


# -- fuzzing --------------------------------------------------------------------------------------

WEIRD = [None, True, -1, 0, 2**63, 1e308, float("inf"), "", "x" * 5000, [], {}, [1, [2, [3]]], {"a": {"b": None}},
         "<speak>", "\u0000", "中文", "longxiaochun_v2", "opus", 22050, -0.0]  # fmt: skip
PARAMETERS = ["voice", "format", "sample_rate", "volume", "rate", "pitch", "bit_rate", "seed", "language_hints",
              "instruction", "enable_ssml", "word_timestamp_enabled", "text_type"]  # fmt: skip


def fuzz_message(rng: random.Random, task_id: str) -> str | bytes:
    kind = rng.randrange(10)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300))
    if kind == 1:
        return "".join(rng.choice(string.printable + '中文\u2028{}[]"') for _ in range(rng.randrange(0, 200)))
    if kind == 2:
        return json.dumps(rng.choice(WEIRD))
    if kind in (3, 4):  # run-task with a few weird parameters
        message = json.loads(run_task(task_id))
        for name in rng.sample(PARAMETERS, rng.randrange(0, 4)):
            message["payload"]["parameters"][name] = rng.choice(WEIRD)
        if rng.random() < 0.2:
            message["payload"][rng.choice(["model", "input", "parameters", "task"])] = rng.choice(WEIRD)
        return json.dumps(message)
    if kind in (5, 6):
        text = rng.choice(["Hello there. ", "<speak>Hi</speak>", "", "中文。", "x" * 3000, "one two three."])
        return action("continue-task", rng.choice([task_id, "someone-else"]), text)
    if kind == 7:
        return action("finish-task", task_id)
    if kind == 8:  # structurally wrong headers
        header = rng.choice(
            [None, [], "run-task", {"action": rng.choice(WEIRD), "task_id": rng.choice(WEIRD)}]
        )
        return json.dumps({"header": header, "payload": rng.choice(WEIRD)})
    return json.dumps({"header": {"action": "run-task", "task_id": task_id}, "payload": {}, "extra": 1})


async def fuzz_connection(url: str, rng: random.Random) -> None:
    task_id = f"{rng.getrandbits(128):032x}"
    try:
        async with connect(url, max_size=None, open_timeout=5, close_timeout=1) as ws:
            for _ in range(rng.randrange(1, 12)):
                await ws.send(fuzz_message(rng, task_id))
            if rng.random() < 0.3:  # sometimes read what comes back until the server is done with us
                with pytest.raises((ConnectionClosed, asyncio.TimeoutError)):
                    while True:
                        await asyncio.wait_for(ws.recv(), 1.0)
    except ConnectionClosed:
        pass


async def fuzz_tcp(port: int, rng: random.Random) -> None:
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    try:
        payload = rng.choice(
            [
                rng.randbytes(500),
                b"GET / HTTP/1.1\r\n\r\n",
                b"GET /api-ws/v1/inference HTTP/1.1\r\nHost: x\r\n",
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + rng.randbytes(64),
            ]
        )
        writer.write(payload)
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 5)  # the server answers (or not) and closes
    finally:
        writer.close()


async def test_server_survives_a_fuzzing_client(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    rng = random.Random(20240917)
    config = ServerConfig(engine="tone", chunk_ms=20, max_message_bytes=100_000)
    async with EmbeddedServer(config) as server:
        for _ in range(60):
            await fuzz_connection(server.url, rng)
        await asyncio.gather(*(fuzz_connection(server.url, rng) for _ in range(20)))
        await asyncio.gather(*(fuzz_tcp(server.port, rng) for _ in range(10)))
        await until(lambda: server.active_connections == 0, 10, "every fuzzed connection to end")
        assert server.connections_opened >= 70
        # A normal client still works, completely.
        async with AsyncSynthesizer(url=server.url) as synth:
            result = await asyncio.wait_for(synth.synthesize_audio("Still standing."), 5)
        record = [t for t in server.tasks if t.texts == ["Still standing."]][-1]
        assert len(result.audio) == record.audio_bytes_sent and tags_of(result.audio) == {record.tag}
    crashes = [
        r
        for r in caplog.records
        if r.name.startswith("cosyvoice_stream.server") and r.levelno >= logging.ERROR
    ]
    assert not crashes, [r.getMessage() for r in crashes]
