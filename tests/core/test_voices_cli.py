"""``cosyvoice-stream voices``: filters, JSON, errors, preview; and the Pipecat CLI's same listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cosyvoice_stream.audio import read_wav
from cosyvoice_stream.cli import main
from cosyvoice_stream.server import EmbeddedServer, ServerConfig
from cosyvoice_stream.voices import CATALOGUE, VOICES, voices_for_model
from cosyvoice_stream.voices_cli import VoiceFilterError, filter_voices, listing, preview_model


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["voices", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()[1:]]


def test_lists_the_whole_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys)
    assert code == 0 and _ids(out) == [v.id for v in VOICES]
    assert out.splitlines()[0].split()[:6] == [
        "voice",
        "models",
        "languages",
        "ssml",
        "instruct",
        "timestamps",
    ]
    assert "214 voices" in err and CATALOGUE.compiled.isoformat() in err


@pytest.mark.parametrize("model", ["v3-flash", "cosyvoice-v3-flash", "V3-FLASH"])
def test_model_filter_takes_aliases(capsys: pytest.CaptureFixture[str], model: str) -> None:
    code, out, _ = _run(capsys, "--model", model)
    assert code == 0 and _ids(out) == [v.id for v in voices_for_model("cosyvoice-v3-flash")]
    assert len(_ids(out)) == 88


def test_filters_combine(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "-m", "v3-flash", "--supports", "instruct", "--supports", "timestamps")
    assert code == 0 and _ids(out) == ["longanyang", "longanhuan_v3", "longanhuan", "longhuhu_v3"]
    code, out, _ = _run(capsys, "--language", "ja")
    assert code == 0 and _ids(out) and all("ja" in v.languages for v in filter_voices(language="ja"))
    code, out, _ = _run(capsys, "--language", "en-GB", "--model", "v2")
    british = [
        v.id for v in voices_for_model("cosyvoice-v2") if any("en-GB" in x for x in v.language_variants)
    ]
    assert code == 0 and _ids(out) == british and "loongluna_v2" in british
    code, out, _ = _run(capsys, "--supports", "ssml", "-m", "v1")
    assert code == 0 and out == ""  # valid filters, no voice: no SSML on v1


def test_json_for_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "--model", "v3-plus", "--json")
    data = json.loads(out)
    assert code == 0 and data["compiled"] == CATALOGUE.compiled.isoformat()
    assert data["sources"] == list(CATALOGUE.sources) and data["count"] == 2
    assert [v["voice"] for v in data["voices"]] == ["longanyang", "longanhuan"]
    first = data["voices"][0]
    assert first["models"] == ["cosyvoice-v3-flash", "cosyvoice-v3-plus"]
    assert first["ssml"] is first["instruct"] is first["timestamps"] is True
    assert first["instruct_forms"]["cosyvoice-v3-plus"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--model", "v9"], "unknown model 'v9'"),
        (["--model", "cosyvoice-v2-plus"], "v3-flash"),
        (["--language", "fr"], "unknown language 'fr'"),
    ],
)
def test_unknown_filters_are_errors_not_empty_lists(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and needle in err


def test_unknown_feature_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["voices", "--supports", "karaoke"])
    assert info.value.code == 2 and "karaoke" in capsys.readouterr().err
    with pytest.raises(VoiceFilterError, match="karaoke"):
        filter_voices(supports=["karaoke"])


def test_clone_only_model_says_why_it_has_no_system_voices(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--model", "v3.5-plus")
    assert code == 0 and out == "" and "cloned or designed voices only" in err


def test_preview_writes_a_wav_through_the_embedded_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
    monkeypatch.delenv("DASHSCOPE_WEBSOCKET_BASE_URL", raising=False)
    out = tmp_path / "p.wav"
    code, stdout, _ = _run(capsys, "preview", "longxiaochun_v2", "-o", str(out), "--engine", "tone")
    assert code == 0, stdout
    assert "longxiaochun_v2 on cosyvoice-v2" in stdout and "embedded server" in stdout
    pcm, rate = read_wav(out.read_bytes())
    assert rate == 24000 and len(pcm) > 24000  # over half a second of tone words


def test_preview_against_a_given_url(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    handle = EmbeddedServer(ServerConfig(engine="tone")).start_in_thread()
    try:
        out = tmp_path / "q.wav"
        code, stdout, _ = _run(
            capsys, "preview", "longanyang", "--text", "One two.", "-o", str(out), "--url", handle.url
        )
        assert code == 0, stdout
        (task,) = [t for t in handle.server.tasks if t.texts]
        assert task.parameters["voice"] == "longanyang" and task.texts == ["One two."]
    finally:
        handle.stop()


def test_preview_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = _run(capsys, "preview", "nosuchvoice", "-o", str(tmp_path / "x.wav"))
    assert code == 2 and "--model" in err and not (tmp_path / "x.wav").exists()
    code, _, err = _run(capsys, "preview", "longanyang", "-o", str(tmp_path / "missing" / "x.wav"))
    assert code == 2 and "cannot write" in err
    assert preview_model("cosyvoice-v2-mine-1", None) == "cosyvoice-v2"
    assert preview_model("longanyang", "v3-plus") == "cosyvoice-v3-plus"


def test_pipecat_cli_prints_the_same_listing() -> None:
    from pipecat_cosyvoice.cli import app

    for argv in (["--model", "v2", "--supports", "ssml"], ["-l", "en", "--json"]):
        result = CliRunner().invoke(app, ["voices", *argv])
        assert result.exit_code == 0
        options = {"--model": None, "-l": None}
        options.update(zip(argv[::2], argv[1::2], strict=False))
        expected, _ = listing(
            options["--model"],
            options["-l"],
            ["ssml"] if "--supports" in argv else [],
            as_json="--json" in argv,
        )
        assert result.stdout.rstrip("\n") == expected
    bad = CliRunner().invoke(app, ["voices", "--language", "fr"])
    assert bad.exit_code == 2 and "unknown language" in bad.output
