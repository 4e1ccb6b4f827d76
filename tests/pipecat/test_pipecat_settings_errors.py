"""Runtime settings, language mapping, errors and recovery of CosyVoiceTTSService."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from loguru import logger
from pipecat.frames.frames import ErrorFrame, TTSSpeakFrame, TTSStoppedFrame, TTSUpdateSettingsFrame
from pipecat.services.settings import TTSSettings
from pipecat.transcriptions.language import Language
from pipecat.utils.errors import ErrorCategory
from pipecat_cosyvoice import CosyVoiceTTSService, language_to_cosyvoice_language
from pipecat_helpers import (
    Driver,
    Probe,
    audio_bytes,
    errors,
    run_pipeline,
    spoken_tasks,
    stopped_ids,
    tags_of,
    task_saying,
)

from cosyvoice_stream import AuthenticationError, InvalidParameterError, VoiceModelMismatchError
from cosyvoice_stream.server import Fault

Settings = CosyVoiceTTSService.Settings


# -- settings ---------------------------------------------------------------------------
async def test_settings_update_applies_from_the_next_utterance(server) -> None:
    tts = CosyVoiceTTSService(url=server.url, settings=Settings(language=Language.EN_US))
    frames = [
        TTSSpeakFrame("First voice here."),
        TTSUpdateSettingsFrame(
            delta=Settings(voice="longanhuan", speech_rate=2.0, pitch_rate=1.5, volume=100, seed=7)
        ),
        TTSSpeakFrame("Second voice now."),
        TTSUpdateSettingsFrame(
            delta=TTSSettings(model="cosyvoice-v2", voice="longxiaochun_v2", language="zh")
        ),
        TTSSpeakFrame("你好。"),
    ]
    down, up = await run_pipeline(tts, frames)

    assert not up
    assert len(spoken_tasks(server)) == 3
    first, second = task_saying(server, "First"), task_saying(server, "Second")
    third = task_saying(server, "你好")
    assert first.parameters["voice"] == "longanyang"
    assert first.parameters["language_hints"] == ["en"]
    assert second.parameters["voice"] == "longanhuan"
    assert (second.parameters["rate"], second.parameters["pitch"]) == (2.0, 1.5)
    assert (second.parameters["volume"], second.parameters["seed"]) == (100, 7)
    assert (third.model, third.parameters["voice"]) == ("cosyvoice-v2", "longxiaochun_v2")
    assert third.parameters["language_hints"] == ["zh"]
    ctx1, ctx2, _ = stopped_ids(down)
    # Rate 2: half-length words; volume 100: twice the amplitude.
    assert len(audio_bytes(down, ctx2)) == 3 * 12000 // 2
    assert tags_of(audio_bytes(down, ctx2)) == {2 * second.tag}
    assert tags_of(audio_bytes(down, ctx1)) == {first.tag}
    assert tts.settings.voice == "longxiaochun_v2"


async def test_refused_settings_update_keeps_previous_settings(server) -> None:
    tts = CosyVoiceTTSService(url=server.url)
    frames = [
        TTSUpdateSettingsFrame(delta=TTSSettings(voice="longxiaochun_v2")),  # a v2 voice on a v3 model
        TTSUpdateSettingsFrame(delta=TTSSettings(language=Language.ES)),
        TTSUpdateSettingsFrame(delta=Settings(speech_rate=9.0)),
        TTSSpeakFrame("Still speaking."),
    ]
    down, up = await run_pipeline(tts, frames)

    mismatch, language, rate = errors(up)
    assert "longxiaochun_v2" in mismatch.error and "cosyvoice-v2" in mismatch.error
    assert "language" in language.error and "es" in language.error
    assert "speech_rate=9.0" in rate.error
    assert all(e.category is ErrorCategory.APPLICATION for e in (mismatch, language, rate))
    assert tts.is_usable
    (task,) = spoken_tasks(server)
    assert task.parameters["voice"] == "longanyang" and task.parameters["rate"] == 1.0
    assert "language_hints" not in task.parameters
    assert len(audio_bytes(down)) == task.audio_bytes_sent == 2 * 12000


def test_language_mapping() -> None:
    expected = {
        Language.ZH: "zh",
        Language.ZH_CN: "zh",
        Language.ZH_TW: "zh",
        Language.CMN: "zh",
        Language.EN: "en",
        Language.EN_GB: "en",
        Language.FR_CA: "fr",
        Language.DE_DE: "de",
        Language.JA_JP: "ja",
        Language.KO_KR: "ko",
        Language.RU: "ru",
        Language.ES: None,
        Language.YUE: "zh",  # Cantonese: CosyVoice speaks it under the zh hint (the core's table)
    }
    assert {lang: language_to_cosyvoice_language(lang) for lang in expected} == expected
    tts = CosyVoiceTTSService(url="ws://127.0.0.1:9/x", settings=Settings(language=Language.JA_JP))
    assert tts.settings.language == "ja"
    assert tts.synthesizer is not None and tts.synthesizer.options.language_hints == ("ja",)


def test_constructor_validates_everything_before_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "ws://127.0.0.1:9/x"
    with pytest.raises(InvalidParameterError, match="speech_rate"):
        CosyVoiceTTSService(url=url, settings=Settings(speech_rate=3.0))
    with pytest.raises(InvalidParameterError, match="language"):
        CosyVoiceTTSService(url=url, settings=Settings(language=Language.ES))
    with pytest.raises(VoiceModelMismatchError, match="418"):
        CosyVoiceTTSService(url=url, model="cosyvoice-v3-flash", voice="longxiaochun_v2")
    with pytest.raises(InvalidParameterError, match="wss://"):
        CosyVoiceTTSService(url="ws://example.com/x", api_key="k")
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    with pytest.raises(AuthenticationError, match="DASHSCOPE_API_KEY"):
        CosyVoiceTTSService()  # the cloud without a key
    # Direct arguments and settings: settings win; the key is never shown.
    tts = CosyVoiceTTSService(
        url=url, api_key="sk-secret-123", voice="longanhuan", settings=Settings(voice="longanyang")
    )
    assert tts.settings.voice == "longanyang"
    assert "sk-secret-123" not in repr(tts) + str(tts) + repr(tts.synthesizer) + repr(tts.__dict__)


async def test_key_and_url_from_the_environment(start_server, monkeypatch: pytest.MonkeyPatch) -> None:
    server = await start_server(api_keys=frozenset({"env-key-1"}))
    monkeypatch.setenv("DASHSCOPE_API_KEY", "env-key-1")
    monkeypatch.setenv("DASHSCOPE_WEBSOCKET_BASE_URL", server.url)
    tts = CosyVoiceTTSService()
    down, up = await run_pipeline(tts, [TTSSpeakFrame("From the environment.")])
    assert not up
    (task,) = spoken_tasks(server)
    assert len(audio_bytes(down)) == task.audio_bytes_sent == 3 * 12000


# -- errors ------------------------------------------------------------------------------
@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[list[str]]:
    """Everything logged (loguru and logging) during the test."""
    caplog.set_level(logging.DEBUG)
    records: list[str] = []
    handler = logger.add(lambda message: records.append(str(message)), level="TRACE")
    yield records
    logger.remove(handler)
    records.extend(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("fault", "category", "words"),
    [
        (
            Fault(kind="fail_task", code="InternalError", message="engine exploded", after_frames=2),
            ErrorCategory.SERVER,
            ("task failed", "engine exploded"),
        ),
        (
            Fault(kind="drop", after_frames=2, stage="audio"),
            ErrorCategory.CONNECTIVITY,
            ("connection failed", "dropped"),
        ),
    ],
    ids=["task-failed", "connection-dropped"],
)
async def test_transient_failure_is_reported_and_the_next_utterance_works(
    server, fault: Fault, category: ErrorCategory, words: tuple[str, ...]
) -> None:
    server.add_fault(fault)
    tts = CosyVoiceTTSService(url=server.url, prewarm=False)  # no pre-started task takes the fault
    probe = Probe()

    async def script(driver: Driver) -> None:
        await driver.push_frame(TTSSpeakFrame("This utterance breaks after two frames of audio."))
        await driver.upstream.wait_count(ErrorFrame)
        await probe.wait_count(TTSStoppedFrame)  # the broken context ends: nothing hangs
        await driver.push_frame(TTSSpeakFrame("This one works."))
        await probe.wait_count(TTSStoppedFrame, 2)

    down, up = await run_pipeline(tts, script=script, probe=probe)

    (error,) = errors(up)
    assert all(w in error.error for w in words), error.error
    assert error.category is category and not error.category.is_permanent
    assert error.processor is tts and tts.is_usable
    assert len(spoken_tasks(server)) == 2
    good = task_saying(server, "This one works.")
    ctx1, ctx2 = stopped_ids(down)
    assert 0 < len(audio_bytes(down, ctx1)) < 10 * 12000
    assert len(audio_bytes(down, ctx2)) == good.audio_bytes_sent == 3 * 12000
    assert tags_of(audio_bytes(down, ctx2)) == {good.tag}


@pytest.mark.parametrize("prewarm", [False, True])
async def test_bad_api_key_is_fatal_and_never_logged(start_server, logs: list[str], prewarm: bool) -> None:
    server = await start_server(api_keys=frozenset({"the-right-key"}))
    tts = CosyVoiceTTSService(url=server.url, api_key="sk-wrong-key-42", prewarm=prewarm)
    down, up = await run_pipeline(tts, [TTSSpeakFrame("Hello.")])

    found = errors(up)
    assert found and all(e.category is ErrorCategory.AUTHENTICATION for e in found)
    assert "403" in found[0].error or "401" in found[0].error
    assert not tts.is_usable  # written off until its settings or credentials change
    assert not server.tasks and not audio_bytes(down)
    assert "sk-wrong-key-42" not in "\n".join(logs + [e.error for e in found] + [repr(e) for e in found])


async def test_voice_refused_by_the_service_until_settings_change(server) -> None:
    # A voice the client does not know (not in the catalogue, not cloned here):
    # the embedded server refuses it as the service does, with code 418.
    tts = CosyVoiceTTSService(url=server.url, prewarm=False, settings=Settings(voice="my-cloned-voice"))
    probe = Probe()

    async def script(driver: Driver) -> None:
        await driver.push_frame(TTSSpeakFrame("Wrong voice."))
        await driver.upstream.wait_count(ErrorFrame)
        await probe.wait_count(TTSStoppedFrame)
        await driver.push_frame(TTSSpeakFrame("Not spoken while the service is written off."))
        await probe.wait_count(TTSStoppedFrame, 2)  # ended at once, not after an idle timeout
        await driver.push_frame(TTSUpdateSettingsFrame(delta=Settings(voice="longanhuan")))
        await driver.push_frame(TTSSpeakFrame("Right voice."))
        await probe.wait_count(TTSStoppedFrame, 3)

    down, up = await run_pipeline(tts, script=script, probe=probe)

    (error,) = errors(up)
    assert error.category is ErrorCategory.INVALID_REQUEST and error.category.is_permanent
    assert "418" in error.error
    refused, accepted = server.tasks  # prewarm=False: no pre-started tasks
    assert refused.error_code and refused.parameters["voice"] == "my-cloned-voice"
    assert accepted.parameters["voice"] == "longanhuan"
    assert accepted.texts == ["Right voice."]  # nothing was sent while written off
    _, silent, spoken = stopped_ids(down)
    assert not audio_bytes(down, silent)
    assert len(audio_bytes(down, spoken)) == accepted.audio_bytes_sent == 2 * 12000
    assert tts.is_usable


async def test_failure_mid_turn_ends_that_turn_and_the_next_turn_works(server) -> None:
    from pipecat.frames.frames import LLMFullResponseEndFrame, LLMFullResponseStartFrame, LLMTextFrame

    server.add_fault(Fault(kind="drop", after_frames=1, stage="audio"))
    tts = CosyVoiceTTSService(url=server.url, prewarm=False)
    probe = Probe()

    async def script(driver: Driver) -> None:
        await driver.push_frame(LLMFullResponseStartFrame())
        for token in ["Hello", " there.", " And"]:
            await driver.push_frame(LLMTextFrame(token))
        await driver.upstream.wait_count(ErrorFrame)  # the connection dropped mid-turn
        for token in [" the", " rest", " is", " lost."]:
            await driver.push_frame(LLMTextFrame(token))
        await driver.push_frame(LLMFullResponseEndFrame())
        await probe.wait_count(LLMFullResponseEndFrame)
        for frame in [
            LLMFullResponseStartFrame(),
            LLMTextFrame("Next"),
            LLMTextFrame(" turn."),
            LLMFullResponseEndFrame(),
        ]:
            await driver.push_frame(frame)
        await probe.wait_count(LLMFullResponseEndFrame, 2)

    down, up = await run_pipeline(tts, script=script, probe=probe)

    (error,) = errors(up)
    assert error.category is ErrorCategory.CONNECTIVITY
    assert len(spoken_tasks(server)) == 2
    broken, good = task_saying(server, "Hello"), task_saying(server, "Next")
    assert "".join(good.texts) == "Next turn."
    assert "lost" not in "".join(broken.texts)  # the rest of the broken turn was not sent anywhere
    _, ctx2 = stopped_ids(down)
    assert len(audio_bytes(down, ctx2)) == good.audio_bytes_sent == 2 * 12000
