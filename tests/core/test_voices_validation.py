"""Options checked against the voice catalogue at construction, one test per capability."""

from __future__ import annotations

import logging

import pytest

from cosyvoice_stream import AsyncSynthesizer
from cosyvoice_stream.errors import (
    InstructionError,
    InvalidParameterError,
    SSMLError,
    VoiceModelMismatchError,
)
from cosyvoice_stream.options import SynthesisOptions, resolve_word_timestamps
from cosyvoice_stream.protocol import TaskProtocol

V1 = {"model": "cosyvoice-v1", "voice": "longwan"}
#: A port nothing listens on: the checks below must fail before any connection.
NOWHERE = "ws://127.0.0.1:9/api-ws/v1/inference"


@pytest.mark.parametrize(
    ("model", "voice"),
    [
        ("cosyvoice-v2", "longanyang"),  # v3 voice on v2
        ("cosyvoice-v3-plus", "longanhuan_v3"),  # a v3-flash-only voice on v3-plus
        ("cosyvoice-v1", "longxiaochun_v2"),
        ("cosyvoice-v3.5-flash", "longanyang"),  # v3.5 has no system voices
        ("cosyvoice-v3-flash", "cosyvoice-v2-mine-123"),  # cloned for another model
    ],
)
def test_voice_of_another_model_is_the_mismatch_error(model: str, voice: str) -> None:
    with pytest.raises(VoiceModelMismatchError, match="418") as info:
        SynthesisOptions(model=model, voice=voice)
    assert voice in str(info.value) and model in str(info.value)


def test_explicit_word_timestamps_on_a_voice_without_them() -> None:
    with pytest.raises(InvalidParameterError, match=r"voice='longwan'.*word timestamps") as info:
        SynthesisOptions(**V1, word_timestamp_enabled=True)
    assert info.value.parameter == "word_timestamp_enabled"
    # v2 voices without timestamps too (the list marks 22 of them)
    with pytest.raises(InvalidParameterError, match="loongeva_v2"):
        SynthesisOptions(model="cosyvoice-v2", voice="loongeva_v2", word_timestamp_enabled=True)
    with pytest.raises(InvalidParameterError, match="additional_params"):
        SynthesisOptions(**V1, additional_params={"word_timestamp_enabled": True})
    assert SynthesisOptions(**V1, word_timestamp_enabled=False).word_timestamp_enabled is False


def test_instruction_on_a_voice_without_instruct() -> None:
    with pytest.raises(InstructionError, match=r"voice='longyingjing_v3'.*Instruct") as info:
        SynthesisOptions(voice="longyingjing_v3", instruction="你说话的情感是happy。")
    assert info.value.parameter == "instruction"


def test_instruction_not_in_the_documented_format_shows_the_accepted_forms() -> None:
    with pytest.raises(InstructionError) as info:
        SynthesisOptions(voice="longanyang", instruction="Speak happily.")
    message = str(info.value)
    assert "longanyang" in message and "Speak happily." in message
    assert "你说话的情感是<情感值>。" in message and "happy" in message and "新闻播报" in message
    with pytest.raises(InstructionError, match="请用<方言>表达。"):
        SynthesisOptions(voice="longanhuan_v3", instruction="请用火星话表达。")
    SynthesisOptions(voice="longanhuan_v3", instruction="请用山东话表达。")
    SynthesisOptions(voice="longhuhu_v3", instruction="你正在以一个故事机的身份说话，你说话的情感是happy。")


def test_instruction_format_depends_on_the_model() -> None:
    # 课堂教学 is a longanhuan scene on v3-flash, not on v3-plus.
    text = "你正在进行课堂教学，你说话的情感是neutral。"
    SynthesisOptions(model="cosyvoice-v3-flash", voice="longanhuan", instruction=text)
    with pytest.raises(InstructionError, match="cosyvoice-v3-plus"):
        SynthesisOptions(model="cosyvoice-v3-plus", voice="longanhuan", instruction=text)


async def test_ssml_on_a_voice_without_it_is_refused_at_the_call() -> None:
    synth = AsyncSynthesizer(**V1, url=NOWHERE, prestart=False, keep_warm=0)
    try:
        # synthesize() returns a lazy generator: raising here means before any connection.
        with pytest.raises(SSMLError, match=r"voice='longwan'.*SSML"):
            synth.synthesize("<speak>Hello</speak>")
    finally:
        await synth.aclose()
    with pytest.raises(SSMLError, match="longwan"):  # every layer's task goes through here
        TaskProtocol(SynthesisOptions(**V1), ssml=True)
    TaskProtocol(SynthesisOptions(**V1))  # plain text is fine
    SynthesisOptions(voice="longanyang").check_ssml()


def test_unknown_and_cloned_voices_pass_through() -> None:
    options = SynthesisOptions(
        voice="longbrandnew_v3", instruction="whatever the service takes", word_timestamp_enabled=True
    )
    assert options.word_timestamp_enabled is True
    SynthesisOptions(
        model="cosyvoice-v3-flash", voice="cosyvoice-v3-flash-mine-abc", word_timestamp_enabled=True
    )
    SynthesisOptions(model="cosyvoice-v3.5-plus", voice="cosyvoice-v3.5-plus-vd-mine-1")
    SynthesisOptions(model="cosyvoice-v9", voice="longanyang")  # a model nobody here knows


def test_auto_word_timestamps_degrade_with_one_log_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cosyvoice_stream"):
        options = SynthesisOptions(**V1, word_timestamp_enabled="auto")
        copies = [options.replace(sample_rate=16000), options.replace(volume=70)]
    assert options.word_timestamp_enabled is False and options.word_timestamps_auto
    assert all(c.word_timestamp_enabled is False for c in copies)
    lines = [r.getMessage() for r in caplog.records if "word timestamps" in r.getMessage()]
    assert lines == ["voice 'longwan' has no word timestamps: text is delivered without word timings"]


def test_auto_word_timestamps_follow_a_voice_change() -> None:
    options = SynthesisOptions(word_timestamp_enabled="auto")
    assert options.word_timestamp_enabled is True
    v1 = options.replace(**V1)
    assert v1.word_timestamp_enabled is False and v1.word_timestamps_auto
    back = v1.replace(model="cosyvoice-v3-flash", voice="longanhuan")
    assert back.word_timestamp_enabled is True
    fixed = back.replace(word_timestamp_enabled=False)
    assert (
        not fixed.word_timestamps_auto and fixed.replace(voice="longanyang").word_timestamp_enabled is False
    )
    assert resolve_word_timestamps("auto", "longwan") is False
    assert resolve_word_timestamps("auto", "cosyvoice-v2-mine-1") is True
    assert resolve_word_timestamps(True, "longwan") is True  # explicit: the options refuse it


def test_adapters_degrade_where_timestamps_are_a_default(caplog: pytest.LogCaptureFixture) -> None:
    from livekit.plugins import cosyvoice
    from pipecat_cosyvoice import CosyVoiceTTSService

    with caplog.at_level(logging.INFO, logger="cosyvoice_stream"):
        lk = cosyvoice.TTS(base_url=NOWHERE, **V1, prestart=False)
    assert lk.capabilities.aligned_transcript is False
    assert lk.synthesizer.options.word_timestamp_enabled is False
    assert sum("has no word timestamps" in r.getMessage() for r in caplog.records) == 1
    assert cosyvoice.TTS(base_url=NOWHERE, prestart=False).capabilities.aligned_transcript is True
    with pytest.raises(ValueError, match="word timestamps"):
        cosyvoice.TTS(base_url=NOWHERE, **V1, word_timestamps=True)

    pc = CosyVoiceTTSService(url=NOWHERE, **V1, prewarm=False)
    assert pc.synthesizer is not None and pc.synthesizer.options.word_timestamp_enabled is False
    with pytest.raises(ValueError, match="word timestamps"):
        CosyVoiceTTSService(url=NOWHERE, **V1, prewarm=False, word_timestamps=True)


def test_sdk_style_layer_refuses_ssml_on_a_voice_without_it_before_sending() -> None:
    from cosyvoice_stream.server import EmbeddedServer, ServerConfig
    from cosyvoice_stream.sync import SpeechSynthesizer

    with EmbeddedServer(ServerConfig(engine="tone")).start_in_thread() as handle:
        synthesizer = SpeechSynthesizer(**V1, url=handle.url, additional_params={"enable_ssml": True})
        with pytest.raises(SSMLError, match="longwan"):
            synthesizer.call("<speak>Hello</speak>")
        assert handle.server.tasks == []
        with pytest.raises(InstructionError, match="accepted forms"):
            SpeechSynthesizer(model="cosyvoice-v3-flash", voice="longanyang", instruction="Be happy.")
