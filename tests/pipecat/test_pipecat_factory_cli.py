"""``create_tts`` from a mapping, the adapter entry points, and the ``cosyvoice`` Typer app."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import typer
from pipecat.frames.frames import TTSSpeakFrame
from pipecat.services.tts_service import TextAggregationMode
from pipecat_cosyvoice import CosyVoiceTTSService, create_tts
from pipecat_cosyvoice.cli import app
from pipecat_helpers import audio_bytes, run_pipeline, spoken_tasks
from typer.testing import CliRunner

from cosyvoice_stream import InvalidParameterError, Timeouts, VoiceModelMismatchError
from cosyvoice_stream import adapters as core_adapters
from cosyvoice_stream.server import EmbeddedServer, ServerConfig


# -- factory -----------------------------------------------------------------------------
def test_create_tts_from_a_mapping() -> None:
    tts = create_tts(
        {
            "model": "cosyvoice-v2",
            "voice": "longxiaochun_v2",
            "sample_rate": 16000,
            "url": "ws://127.0.0.1:9/x",
            "speech_rate": 1.2,
            "pitch_rate": 0.9,
            "volume": 70,
            "seed": 3,
            "language": "zh-CN",
            "text_aggregation_mode": "sentence",
            "timeouts": {"connect": 2.0},
            "prewarm": False,
        }
    )
    assert isinstance(tts, CosyVoiceTTSService)
    s = tts.settings
    assert (s.model, s.voice, s.language) == ("cosyvoice-v2", "longxiaochun_v2", "zh")
    assert (s.speech_rate, s.pitch_rate, s.volume, s.seed) == (1.2, 0.9, 70, 3)
    assert tts._text_aggregation_mode is TextAggregationMode.SENTENCE
    synth = tts.synthesizer
    assert synth is not None and synth.output_rate == 16000 and synth.timeouts == Timeouts(connect=2.0)


def test_create_tts_names_unknown_keys_and_bad_values() -> None:
    with pytest.raises(
        InvalidParameterError, match=r"unknown Pipecat CosyVoice options: speed, voice_name"
    ) as info:
        create_tts({"voice": "longanyang", "speed": 1.0, "voice_name": "x", "url": "ws://127.0.0.1:9/x"})
    assert "speech_rate" in str(info.value)  # the known keys are listed
    with pytest.raises(InvalidParameterError, match="framework='livekit'"):
        create_tts({"framework": "livekit"})
    with pytest.raises(InvalidParameterError, match="text_aggregation_mode"):
        create_tts({"text_aggregation_mode": "word", "url": "ws://127.0.0.1:9/x"})
    with pytest.raises(VoiceModelMismatchError):
        create_tts({"voice": "longxiaochun_v2", "url": "ws://127.0.0.1:9/x"})
    with pytest.raises(InvalidParameterError, match="volume"):
        create_tts({"volume": 101, "url": "ws://127.0.0.1:9/x"})


def test_registered_entry_points_load_this_adapter() -> None:
    (adapter,) = [ep for ep in entry_points(group="cosyvoice_stream.adapters") if ep.name == "pipecat"]
    assert adapter.load() is create_tts
    (cli,) = [ep for ep in entry_points(group="pipecat_cli.extensions") if ep.name == "cosyvoice"]
    assert cli.load() is app and isinstance(app, typer.Typer)
    tts = core_adapters.create_tts(
        {"framework": "pipecat", "voice": "longanhuan"},
        env={"COSYVOICE_URL": "ws://127.0.0.1:9/x", "COSYVOICE_SPEECH_RATE": "1.5"},
    )
    assert isinstance(tts, CosyVoiceTTSService)
    assert (tts.settings.voice, tts.settings.speech_rate) == ("longanhuan", 1.5)


async def test_factory_built_service_speaks(server) -> None:
    tts = create_tts({"url": server.url, "voice": "longanhuan", "speech_rate": 2.0, "sample_rate": 16000})
    down, up = await run_pipeline(tts, [TTSSpeakFrame("Built from a mapping.")], sample_rate=24000)
    assert not up
    (task,) = spoken_tasks(server)
    assert (task.parameters["voice"], task.parameters["rate"], task.parameters["sample_rate"]) == (
        "longanhuan",
        2.0,
        16000,  # the service's own sample_rate wins over the pipeline's
    )
    assert len(audio_bytes(down)) == task.audio_bytes_sent == 4 * 16000 // 8 * 2


# -- CLI ---------------------------------------------------------------------------------
@pytest.fixture
def threaded_server() -> Iterator[EmbeddedServer]:
    """The tone server on its own thread: the CLI runs its own event loop."""
    handle = EmbeddedServer(ServerConfig(engine="tone")).start_in_thread()
    yield handle.server
    handle.stop()


def test_cli_voices() -> None:
    result = CliRunner().invoke(app, ["voices"])
    assert result.exit_code == 0
    assert "longanyang" in result.output and "longxiaochun_v2" in result.output
    result = CliRunner().invoke(app, ["voices", "--model", "cosyvoice-v2"])
    assert result.exit_code == 0
    assert "longxiaochun_v2" in result.output and "longanyang" not in result.output
    assert CliRunner().invoke(app, ["voices", "--model", "nope"]).exit_code == 2


def test_cli_say_writes_a_wav(threaded_server: EmbeddedServer, tmp_path: Path) -> None:
    out = tmp_path / "hello.wav"
    result = CliRunner().invoke(
        app, ["say", "Hello there, friend.", "-o", str(out), "--url", threaded_server.url, "-r", "16000"]
    )
    assert result.exit_code == 0, result.output
    with wave.open(str(out), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
        assert wav.getnframes() == 3 * 4000  # three tone words of 250 ms
    assert "Hello@0.00" in result.output and "friend.@0.50" in result.output
    (task,) = spoken_tasks(threaded_server)
    assert task.parameters["sample_rate"] == 16000


def test_cli_say_reports_errors(threaded_server: EmbeddedServer, tmp_path: Path) -> None:
    out = tmp_path / "x.wav"
    result = CliRunner().invoke(
        app, ["say", "Hi.", "-o", str(out), "--url", threaded_server.url, "--voice", "longxiaochun_v2"]
    )
    assert result.exit_code == 2
    assert "cosyvoice-v2" in result.output and not out.exists()


def test_cli_mounts_under_a_parent_typer_app_like_pipecats() -> None:
    """What ``pipecat`` 1.14 does with each ``pipecat_cli.extensions`` entry point."""
    parent = typer.Typer()

    @parent.callback()
    def main() -> None:
        """The parent CLI."""

    for ep in entry_points(group="pipecat_cli.extensions"):
        extension = ep.load()
        assert isinstance(extension, typer.Typer)
        parent.add_typer(extension, name=ep.name)
    result = CliRunner().invoke(parent, ["cosyvoice", "voices", "-m", "cosyvoice-v3-flash"])
    assert result.exit_code == 0 and "longanyang" in result.output


def test_real_pipecat_cli_lists_the_extension() -> None:
    from pipecat.cli import main as pipecat_cli

    try:
        pipecat_app = pipecat_cli._build_app()
    except ImportError:
        pytest.skip("the `pipecat` command needs cosyvoice-stream[pipecat-cli] (not installed here)")
    result = CliRunner().invoke(pipecat_app, ["cosyvoice", "voices"])
    assert result.exit_code == 0 and "longanyang" in result.output
