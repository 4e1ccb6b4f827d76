import pytest

from cosyvoice_stream.errors import InstructionError, InvalidParameterError, VoiceModelMismatchError
from cosyvoice_stream.options import AudioFormat, SynthesisOptions, language_hint, service_sample_rate


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"volume": 101}, "volume=101 is invalid: expected an int in [0, 100]"),
        ({"volume": 50.5}, "volume=50.5"),
        ({"volume": True}, "volume=True"),
        ({"speech_rate": 0.4}, "speech_rate=0.4 is invalid: expected a number in [0.5, 2]"),
        ({"speech_rate": float("nan")}, "speech_rate=nan"),
        ({"pitch_rate": 2.5}, "pitch_rate=2.5"),
        ({"seed": 65536}, "seed=65536 is invalid: expected an int in [0, 65535]"),
        ({"seed": -1}, "seed=-1"),
        ({"format": "flac"}, "format='flac' is invalid: expected one of pcm, wav, mp3, opus"),
        ({"sample_rate": 32000}, "sample_rate=32000"),
        ({"format": "opus", "bit_rate": 5}, "bit_rate=5 is invalid: expected an int in [6, 510]"),
        ({"bit_rate": 32}, "unless format='opus'"),
        ({"language_hints": ["xx"]}, "language_hints=['xx']"),
        ({"language_hints": ["en", "zh"]}, "exactly one"),
        ({"language_hints": "en"}, "language_hints='en'"),
        ({"voice": ""}, "voice=''"),
        ({"voice": "a\nb"}, "voice='a\\nb'"),
        ({"model": 3}, "model=3"),
        ({"instruction": "x" * 129}, "at most 128"),
        ({"aigc_propagator": "me"}, "enable_aigc_tag=True"),
        ({"word_timestamp_enabled": "yes"}, "word_timestamp_enabled='yes'"),
        ({"additional_params": [1]}, "additional_params"),
    ],
)
def test_bad_parameters_name_parameter_value_and_range(changes: dict, needle: str) -> None:
    with pytest.raises(InvalidParameterError) as info:
        SynthesisOptions(**changes)
    assert needle in str(info.value)
    assert info.value.parameter == next(iter(changes)) or "bit_rate" in changes


def test_voice_of_another_generation_is_refused_before_any_request() -> None:
    with pytest.raises(VoiceModelMismatchError, match=r"longxiaochun_v2.*cosyvoice-v2.*418"):
        SynthesisOptions(model="cosyvoice-v3-flash", voice="longxiaochun_v2")
    with pytest.raises(VoiceModelMismatchError):
        SynthesisOptions(model="cosyvoice-v2", voice="cosyvoice-v3-flash-mine-abc")
    SynthesisOptions(model="cosyvoice-v2", voice="longxiaochun_v2")
    SynthesisOptions(model="cosyvoice-v3-flash", voice="some-new-voice")  # unknown voices pass


def test_instruction_only_on_models_that_take_it() -> None:
    with pytest.raises(InstructionError, match="cosyvoice-v2"):
        SynthesisOptions(model="cosyvoice-v2", voice="longxiaochun_v2", instruction="Be happy.")
    SynthesisOptions(model="cosyvoice-v3-plus", instruction="你说话的情感是happy。")


def test_audio_format_members_match_the_sdk() -> None:
    assert AudioFormat.DEFAULT.wire_format == "mp3" and AudioFormat.DEFAULT.wire_sample_rate == 22050
    assert len([f for f in AudioFormat if f.format == "opus"]) == 11
    opts = SynthesisOptions.from_audio_format(AudioFormat.OGG_OPUS_24KHZ_MONO_64KBPS)
    assert (opts.format, opts.sample_rate, opts.bit_rate) == ("opus", 24000, 64)
    assert AudioFormat.PCM_22050HZ_MONO_16BIT.sample_rate == 22050


@pytest.mark.parametrize(
    ("requested", "service"), [(16000, 16000), (24000, 24000), (32000, 44100), (11025, 16000), (96000, 48000)]
)
def test_service_rate_native_or_nearest_above(requested: int, service: int) -> None:
    assert service_sample_rate(requested) == service


def test_replace_validates() -> None:
    with pytest.raises(InvalidParameterError, match="volume"):
        SynthesisOptions().replace(volume=-5)


@pytest.mark.parametrize(
    ("tag", "hint"),
    [("en-US", "en"), ("zh-Hans-CN", "zh"), ("cmn", "zh"), ("JA", "ja"), ("ko_KR", "ko"), ("ru", "ru")],
)
def test_language_tags_map_to_hints(tag: str, hint: str) -> None:
    assert language_hint(tag) == hint


@pytest.mark.parametrize("tag", ["xx", "", "es-ES", None])
def test_unknown_languages_refused(tag: object) -> None:
    with pytest.raises(InvalidParameterError, match="language"):
        language_hint(tag)  # type: ignore[arg-type]


def test_opus_only_at_its_rates() -> None:
    with pytest.raises(InvalidParameterError, match="with format='opus'"):
        SynthesisOptions(format="opus", sample_rate=22050)
    SynthesisOptions(format="opus", sample_rate=48000)


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"volume": 500}, "volume=500"),
        ({"rate": 9}, "speech_rate=9"),
        ({"voice": "longxiaochun_v2"}, "cosyvoice-v2"),
        ({"sample_rate": 12345}, "sample_rate=12345"),
    ],
)
def test_additional_params_overrides_are_validated(params: dict, needle: str) -> None:
    with pytest.raises(InvalidParameterError, match="additional_params overrides") as info:
        SynthesisOptions(additional_params=params)
    assert needle in str(info.value)
    SynthesisOptions(additional_params={"volume": 80, "hot_fix": {"x": 1}})  # valid and unknown keys pass
