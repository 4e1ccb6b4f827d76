"""The built wheel: its files, entry points and dependency metadata; and the one
file of tested versions (constraints.txt) that the Makefile, CI and the README use."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
FRAMEWORK_RANGES = {"pipecat-ai": ">=1.14,<2", "livekit-agents": ">=1.8.9,<2"}
# What only a command line needs: none of it belongs in the service's own extra.
CLI_ONLY = {"typer", "rich", "jinja2", "questionary", "pipecat-ai-context-hub", "chromadb"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )
    [path] = out.glob("cosyvoice_stream-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def _metadata(wheel: zipfile.ZipFile) -> tuple[list[str], list[tuple[Requirement, str]]]:
    """(the extras, each requirement with the extra it belongs to, "" for the base)."""
    text = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    message = Parser().parsestr(text)
    requirements = []
    for line in message.get_all("Requires-Dist") or []:
        req = Requirement(line)
        extra = re.search(r'extra == "([^"]+)"', str(req.marker)) if req.marker else None
        requirements.append((req, extra.group(1) if extra else ""))
    return list(message.get_all("Provides-Extra") or []), requirements


def _pins(python: str | None = None) -> dict[str, Version]:
    """constraints.txt's exact versions for this Python (or the given X.Y)."""
    env = {"python_version": python, "python_full_version": f"{python}.0"} if python else None
    pins: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        [spec] = req.specifier
        assert spec.operator == "==", line
        pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


def test_wheel_contents_and_entry_points(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for required in (
        "cosyvoice_stream/__init__.py",
        "cosyvoice_stream/py.typed",
        "cosyvoice_stream/server/engines/espeak.py",
        "cosyvoice_stream/sync/__init__.py",
        "pipecat_cosyvoice/tts.py",
        "pipecat_cosyvoice/py.typed",
        "livekit/plugins/cosyvoice/tts.py",
        "livekit/plugins/cosyvoice/py.typed",
    ):
        assert required in names, required
    # PEP 420: the plugin must not shadow livekit-agents' namespace packages
    assert "livekit/__init__.py" not in names and "livekit/plugins/__init__.py" not in names
    assert not any(n.startswith(("tests/", "benchmarks/", "examples/")) for n in names)
    entry_points = wheel.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "pipecat = pipecat_cosyvoice.factory:create_tts" in entry_points
    assert "livekit = livekit.plugins.cosyvoice.factory:create_tts" in entry_points
    assert "cosyvoice = pipecat_cosyvoice.cli:app" in entry_points
    assert "cosyvoice-stream = cosyvoice_stream.cli:main" in entry_points


def test_wheel_holds_every_file_of_the_packages(wheel: zipfile.ZipFile) -> None:
    """Package data too (the voice catalogue's JSON under cosyvoice_stream/data, py.typed, ...)."""
    names = set(wheel.namelist())
    for base, prefix in (
        (ROOT / "src" / "cosyvoice_stream", "cosyvoice_stream"),
        (ROOT / "adapters" / "pipecat_cosyvoice", "pipecat_cosyvoice"),
        (ROOT / "adapters" / "livekit", "livekit"),
    ):
        files = [
            path
            for path in base.rglob("*")
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
        ]
        assert files
        for path in files:
            name = f"{prefix}/{path.relative_to(base).as_posix()}"
            assert name in names, f"{name} is missing from the wheel"


def test_dependencies_are_ranges_and_the_cli_has_its_own_extra(wheel: zipfile.ZipFile) -> None:
    extras, requirements = _metadata(wheel)
    assert {"server", "pipecat", "pipecat-cli", "livekit", "all", "dev"} <= set(extras)
    for req, _ in requirements:
        name = canonicalize_name(req.name)
        if name == "cosyvoice-stream":
            assert not req.specifier, req  # our own extras, by name
            continue
        operators = {spec.operator for spec in req.specifier}
        assert not operators & {"==", "==="}, f"exact pin in the metadata: {req}"
        assert operators & {">=", "~=", ">"}, f"no lower bound: {req}"
        if name in FRAMEWORK_RANGES:
            assert req.specifier == req.specifier.__class__(FRAMEWORK_RANGES[name]), req
            assert not req.extras, f"{req}: a framework's own extras are the user's choice"
    by_extra: dict[str, set[str]] = {}
    for req, extra in requirements:
        by_extra.setdefault(extra, set()).add(canonicalize_name(req.name))
    assert by_extra["pipecat"] == {"pipecat-ai"}
    assert by_extra["livekit"] == {"livekit-agents"}
    assert not (by_extra["pipecat"] | by_extra[""]) & CLI_ONLY
    assert {"pipecat-ai", "typer"} <= by_extra["pipecat-cli"]  # hatchling flattens [pipecat] in
    assert "pipecat-ai-context-hub" not in {n for names in by_extra.values() for n in names}
    # what the test suite itself needs comes with [dev]
    assert {"dashscope", "opentelemetry-sdk", "pytest-timeout", "hypothesis", "ruff", "mypy"} <= by_extra[
        "dev"
    ]


def test_constraints_pin_every_dependency_within_its_declared_range(wheel: zipfile.ZipFile) -> None:
    """What CI installs (constraints.txt) is what the metadata allows."""
    pins = _pins()
    assert pins["dashscope"] == Version("2.0.2")  # the SDK the parity tests compare against
    _, requirements = _metadata(wheel)
    checked = 0
    for req, extra in requirements:
        name = canonicalize_name(req.name)
        if name == "cosyvoice-stream" or (
            req.marker is not None and not req.marker.evaluate({"extra": extra})
        ):
            continue
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins[name]}, outside {req}"
        )
        checked += 1
    assert checked >= 15


def test_readme_tested_with_line_is_constraints_txt() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"Tested with (.+?), on Python (\d+\.\d+)", readme, re.S)
    assert match, "README has no 'Tested with ..., on Python X.Y' line"
    named = dict(re.findall(r"\*{0,2}([A-Za-z0-9_.-]+) (\d+(?:\.\d+)+)\*{0,2}", match.group(1)))
    assert {"pipecat-ai", "livekit-agents", "dashscope"} <= set(named)
    pins = _pins(python=match.group(2))
    for name, version in named.items():
        assert pins[canonicalize_name(name)] == Version(version), (
            f"README says {name} {version}, constraints.txt pins {pins[canonicalize_name(name)]}"
        )
    assert "constraints.txt" in readme


def test_make_and_ci_install_from_constraints_txt() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "CONSTRAINTS := constraints.txt" in makefile
    installs = [line for line in makefile.splitlines() if re.search(r"pip install .*-e '", line)]
    assert len(installs) == 2 and all("-c $(CONSTRAINTS)" in line for line in installs)  # uv and pip
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_marker_syntax_of_constraints_txt() -> None:
    """Every line parses and its markers evaluate (pip and uv both read this file)."""
    for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and ";" in line:
            Marker(line.split(";", 1)[1]).evaluate()
