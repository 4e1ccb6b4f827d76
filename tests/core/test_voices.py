"""The voice catalogue: the packaged copy is the project's data file, loaded and typed."""

from __future__ import annotations

import datetime
import json
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from cosyvoice_stream import voices
from cosyvoice_stream.voices import (
    CATALOGUE,
    CATALOGUE_FILE,
    MODELS,
    VOICES,
    CatalogueError,
    cloned_voice_target,
    get_voice,
    load_catalogue,
    parse_catalogue,
    resolve_model,
    voice_models,
    voices_for_model,
)

ROOT = Path(__file__).resolve().parents[2]


def _shared_data() -> Path:
    """The project's data file: ../shared/data beside the clone (as in CI), or
    beside the main clone when this checkout is a git worktree of it."""
    candidates = [ROOT.parent / "shared" / "data" / CATALOGUE_FILE]
    try:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        candidates.append(Path(common).parent.parent / "shared" / "data" / CATALOGUE_FILE)
    except (OSError, subprocess.SubprocessError):
        pass  # not a git checkout: only the first place applies
    return next((c for c in candidates if c.is_file()), candidates[0])


SHARED_DATA = _shared_data()
PACKAGED = resources.files("cosyvoice_stream").joinpath("data").joinpath(CATALOGUE_FILE)


def _raw() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PACKAGED.read_text("utf-8"))
    return data


def test_packaged_catalogue_is_the_shared_data_file() -> None:
    if not SHARED_DATA.is_file():
        pytest.skip(f"the shared data file {SHARED_DATA} is not beside this checkout")
    assert PACKAGED.read_bytes() == SHARED_DATA.read_bytes()
    assert load_catalogue(SHARED_DATA) == CATALOGUE


def test_compile_date_sources_and_rules_are_exposed() -> None:
    raw = _raw()
    assert CATALOGUE.compiled == datetime.date.fromisoformat(raw["compiled"])
    assert CATALOGUE.sources == tuple(raw["sources"])
    assert "help.aliyun.com/zh/model-studio/cosyvoice-voice-list" in CATALOGUE.sources[0]
    assert len(CATALOGUE.rules) == len(raw["rules"]) and all(r.sources for r in CATALOGUE.rules)
    assert CATALOGUE.notes == raw["notes"]


def test_every_record_is_loaded_with_its_flags() -> None:
    raw = _raw()
    assert [v.id for v in VOICES] == [r["voice"] for r in raw["voices"]]
    for record in raw["voices"]:
        voice = get_voice(record["voice"])
        assert voice is not None
        assert voice.models == tuple(record["model"])
        assert (voice.ssml, voice.instruct, voice.word_timestamps) == (
            record["ssml"],
            record["instruct"],
            record["timestamps"],
        )
        assert voice.languages == tuple(record["languages"])
        assert set(voice.instruct_spec) == set(record["instruct_spec"] or {})


def test_counts_per_model_match_the_file() -> None:
    per_model = _raw()["counts"]["per_model"]
    assert MODELS == ("cosyvoice-v3-flash", "cosyvoice-v3-plus", "cosyvoice-v2", "cosyvoice-v1")
    assert set(per_model) == set(MODELS)
    for model, counts in per_model.items():
        listed = voices_for_model(model)
        assert len(listed) == counts["voices"]
        assert sum(v.ssml for v in listed) == counts["ssml_true"]
        assert sum(v.instruct for v in listed) == counts["instruct_true"]
        assert sum(v.word_timestamps for v in listed) == counts["timestamps_true"]
    assert len(VOICES) == _raw()["counts"]["unique_voice_ids"] == 214


def test_the_old_tables_mistakes_are_gone() -> None:
    assert get_voice("longanshuo_v3") is None  # never existed
    assert not any(v.ssml for v in voices_for_model("cosyvoice-v1"))
    longhuhu = get_voice("longhuhu_v3")
    assert longhuhu is not None and longhuhu.instruct


def test_model_aliases_and_unknown_models() -> None:
    assert resolve_model("v3-flash") == "cosyvoice-v3-flash"
    assert resolve_model("V2") == "cosyvoice-v2"
    assert resolve_model("cosyvoice-v3.5-plus") == "cosyvoice-v3.5-plus"
    assert resolve_model("v9") is None
    assert voices_for_model("v1") == voices_for_model("cosyvoice-v1")
    assert voices_for_model("cosyvoice-v3.5-flash") == []  # cloned voices only


def test_cloned_ids_name_their_target_model() -> None:
    assert cloned_voice_target("cosyvoice-v3-flash-myvoice-abc123") == "cosyvoice-v3-flash"
    assert cloned_voice_target("cosyvoice-v3.5-plus-vd-mine-1") == "cosyvoice-v3.5-plus"
    assert cloned_voice_target("cosyvoice-v2-") is None
    assert cloned_voice_target("longanyang") is None
    assert voice_models("longanyang") == ("cosyvoice-v3-flash", "cosyvoice-v3-plus")
    assert voice_models("cosyvoice-v2-p-1") == ("cosyvoice-v2",)
    assert voice_models("brand-new-voice") is None


def test_instruct_formats_accept_exactly_the_documented_forms() -> None:
    spec = get_voice("longanyang").instruct_spec["cosyvoice-v3-flash"]  # type: ignore[union-attr]
    assert spec.accepts("你说话的情感是happy。")
    assert spec.accepts("你正在进行新闻播报，你说话的情感是neutral。")
    assert not spec.accepts("你说话的情感是happy")  # the final 。 is required
    assert not spec.accepts("你说话的情感是joyful。")  # not an allowed emotion
    assert not spec.accepts("Speak happily.")
    dialect = get_voice("longanhuan_v3").instruct_spec["cosyvoice-v3-flash"]  # type: ignore[union-attr]
    assert dialect.accepts("请用四川话表达。") and not dialect.accepts("你说话的情感是happy。")
    for voice in VOICES:
        for spec in voice.instruct_spec.values():
            forms = spec.forms()
            assert len(forms) == len(spec.templates)
            examples = [form.rsplit("e.g. ", 1)[1] for form in forms]
            assert all(spec.accepts(example) for example in examples), voice.id


def test_page_example_that_breaks_its_own_value_list_is_not_shown() -> None:
    # The v3-plus table lists 闲聊对话 for longanhuan but its example uses 闲聊互动.
    spec = get_voice("longanhuan").instruct_spec["cosyvoice-v3-plus"]  # type: ignore[union-attr]
    assert not spec.accepts("你正在进行闲聊互动，你说话的情感是neutral。")
    assert any("e.g. 你正在进行闲聊对话，" in form for form in spec.forms())


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda d: d.pop("voices"), "'voices' list"),
        (lambda d: d.update(compiled="December"), "ISO date"),
        (lambda d: d["voices"][0].update(ssml="yes"), "'ssml' must be true or false"),
        (lambda d: d["voices"][0].update(model=[]), "'model' is empty"),
        (lambda d: d["voices"].append(dict(d["voices"][0])), "appears twice"),
        (lambda d: d["voices"][0].update(instruct_spec={"m": {"rule": "r"}}), "templates"),
    ],
)
def test_malformed_catalogue_is_refused_with_the_field(mutate: Any, needle: str) -> None:
    data = _raw()
    mutate(data)
    with pytest.raises(CatalogueError, match=needle):
        parse_catalogue(data)


def test_voice_supports_and_json_form() -> None:
    voice = get_voice("longwan")
    assert voice is not None
    assert [voice.supports(f) for f in voices.FEATURES] == [False, False, False]
    with pytest.raises(ValueError, match="unknown feature"):
        voice.supports("karaoke")
    data = get_voice("longanyang").to_dict()  # type: ignore[union-attr]
    assert data["voice"] == "longanyang" and data["timestamps"] is True
    assert data["instruct_forms"]["cosyvoice-v3-plus"][0].startswith("你说话的情感是<情感值>。")
    json.dumps(data)


def test_update_validates_before_replacing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"voices": [{"voice": "x"}]}), encoding="utf-8")
    packaged = PACKAGED.read_bytes()
    with pytest.raises(CatalogueError):
        voices.update_catalogue(bad)
    assert PACKAGED.read_bytes() == packaged
    target = tmp_path / "pkg" / "data" / CATALOGUE_FILE
    target.parent.mkdir(parents=True)
    monkeypatch.setattr(voices, "__file__", str(tmp_path / "pkg" / "voices.py"))
    good = tmp_path / "good.json"
    good.write_bytes(packaged)
    assert voices.update_catalogue(good) == target and target.read_bytes() == packaged
