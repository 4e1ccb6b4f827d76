"""Every example program of the seed document runs on cosyvoice_stream.sync.

Each program (tests/sync/data, verbatim copies) gets only its ``dashscope``
import lines rewritten, is pointed at the embedded server, and runs in a
subprocess whose cwd is a temporary directory. The subprocess must exit on its
own (the synthesizer's threads end), must never import ``dashscope``, and must
leave the files and the printed lines the document describes.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cosyvoice_stream.server import ServerHandle

from .support import KEY, STEP

DATA = Path(__file__).parent / "data"

#: The only lines changed in the seed programs.
IMPORT_REWRITES = {
    "import dashscope": "import cosyvoice_stream.sync as dashscope",
    "from dashscope.audio.tts_v2 import *": "from cosyvoice_stream.sync import *",
    # An SDK-internal type of its HTTP API that the example imports but never uses.
    "from dashscope.api_entities.dashscope_response import SpeechSynthesisResponse": "",
}
KEY_LINE = '# dashscope.api_key = "your-api-key"'

#: Runs the example as __main__, then checks that the real SDK was never imported.
RUNNER = """
import runpy, sys
runpy.run_path(sys.argv[1], run_name="__main__")
leaked = sorted(m for m in sys.modules if m == "dashscope" or m.startswith("dashscope."))
assert not leaked, f"the dashscope package was imported: {leaked}"
"""

#: pyaudio replaced by a recorder: what the program played ends up in files.
PYAUDIO_STUB = """
import json

paInt16 = 8


class _Stream:
    def __init__(self, **options):
        self.options = options
        self.data = bytearray()
        self.writes = 0
        self.stopped = False
        self.closed = False

    def write(self, data):
        assert not self.closed, "write after close"
        self.data += data
        self.writes += 1

    def stop_stream(self):
        self.stopped = True

    def close(self):
        self.closed = True


class PyAudio:
    def open(self, **options):
        self.stream = _Stream(**options)
        return self.stream

    def terminate(self):
        s = self.stream
        with open("pyaudio_played.pcm", "wb") as f:
            f.write(bytes(s.data))
        with open("pyaudio_record.json", "w") as f:
            json.dump({"options": s.options, "writes": s.writes, "stopped": s.stopped, "closed": s.closed}, f)
"""


def rewrite(source: str, *, module_settings: dict[str, str] | None = None) -> str:
    """The program with its imports rewritten (and, optionally, the key line set)."""
    out = []
    for line in source.splitlines():
        if line in IMPORT_REWRITES:
            line = IMPORT_REWRITES[line]
        elif line == KEY_LINE and module_settings is not None:
            line = "\n".join(f"dashscope.{name} = {value!r}" for name, value in module_settings.items())
        out.append(line)
    result = "\n".join(out) + "\n"
    assert "dashscope." not in result.replace("dashscope.api_key", "").replace(
        "dashscope.base_websocket_api_url", ""
    ).replace("# dashscope", "#"), "a dashscope import was left"
    return result


def run_example(
    name: str, tmp_path: Path, server: ServerHandle, *, via: str = "environment"
) -> subprocess.CompletedProcess[str]:
    source = (DATA / f"{name}.py.txt").read_text(encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHSCOPE_")}
    if via == "environment":
        program = rewrite(source)
        env["DASHSCOPE_API_KEY"] = KEY
        env["DASHSCOPE_WEBSOCKET_BASE_URL"] = server.url
    else:  # the SDK's module attributes, as `dashscope.api_key = ...` in the program
        program = rewrite(source, module_settings={"api_key": KEY, "base_websocket_api_url": server.url})
        assert "dashscope.api_key = " in program
    (tmp_path / "example.py").write_text(program, encoding="utf-8")
    (tmp_path / "run_example.py").write_text(RUNNER, encoding="utf-8")
    (tmp_path / "pyaudio.py").write_text(PYAUDIO_STUB, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "run_example.py", "example.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def metric(stdout: str) -> tuple[str, float]:
    match = re.search(r"\[Metric\] Request ID: (\w+), First-packet latency: ([-\d.]+) ms", stdout)
    assert match, stdout
    return match.group(1), float(match.group(2))


def line_index(lines: list[str], prefix: str, *, last: bool = False) -> int:
    found = [i for i, line in enumerate(lines) if line.startswith(prefix) or prefix in line]
    assert found, f"no line with {prefix!r} in {lines}"
    return found[-1] if last else found[0]


def assert_mp3(path: Path, expected_bytes: int) -> None:
    data = path.read_bytes()
    assert len(data) == expected_bytes > 0
    assert data[:3] == b"ID3" or (data[0] == 0xFF and data[1] & 0xE0 == 0xE0), data[:4]
    av = pytest.importorskip("av")
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name.startswith("mp3")
        assert stream.codec_context.sample_rate == 22050
        samples = sum(frame.samples for frame in container.decode(stream))
    assert samples > 22050 // 2  # more than half a second of speech-like tone


@pytest.mark.parametrize("via", ["environment", "module attributes"])
def test_non_streaming_call(tmp_path: Path, server: ServerHandle, via: str) -> None:
    result = run_example("non_streaming", tmp_path, server, via=via)
    (task,) = server.server.tasks
    request_id, delay = metric(result.stdout)
    assert request_id == task.task_id
    assert 0 <= delay < STEP * 1000
    assert task.texts == ["What is the weather like today?"]
    assert task.parameters["format"] == "mp3" and task.parameters["sample_rate"] == 22050
    assert task.parameters["enable_ssml"] is True  # call() sends the whole text as the SDK does
    assert task.state == "finished"
    assert_mp3(tmp_path / "output.mp3", task.audio_bytes_sent)


def test_unidirectional_streaming(tmp_path: Path, server: ServerHandle) -> None:
    result = run_example("unidirectional_streaming", tmp_path, server)
    (task,) = server.server.tasks
    lines = result.stdout.splitlines()
    opened = line_index(lines, "Connection established: ")
    data = [i for i, line in enumerate(lines) if "Binary audio data length: " in line]
    complete = line_index(lines, "Speech synthesis is complete.")
    closed = line_index(lines, "Connection closed: ")
    assert data and opened < data[0] and data[-1] < complete < closed == len(lines) - 1
    assert len(data) == task.frames_sent
    assert "An error occurred" not in result.stdout
    # get_first_package_delay() inside on_complete, as the program does
    request_id, delay = metric(result.stdout)
    assert request_id == task.task_id and 0 <= delay < STEP * 1000
    assert_mp3(tmp_path / "output.mp3", task.audio_bytes_sent)


def test_bidirectional_streaming(tmp_path: Path, server: ServerHandle) -> None:
    result = run_example("bidirectional_streaming", tmp_path, server)
    (task,) = server.server.tasks
    source = (DATA / "bidirectional_streaming.py.txt").read_text(encoding="utf-8")
    fragments = ast.literal_eval(re.search(r"test_text = (\[.*?\])", source, re.S).group(1))  # type: ignore[union-attr]
    assert task.texts == fragments  # one continue-task per streaming_call, in order
    assert task.finish_received and task.state == "finished"
    assert task.parameters["format"] == "pcm" and task.parameters["sample_rate"] == 22050
    assert "enable_ssml" not in task.parameters
    record = json.loads((tmp_path / "pyaudio_record.json").read_text())
    assert record["options"] == {"format": 8, "channels": 1, "rate": 22050, "output": True}
    assert record["stopped"] and record["closed"]
    played = (tmp_path / "pyaudio_played.pcm").read_bytes()
    assert len(played) == task.audio_bytes_sent > 22050 * 2  # all of it, more than a second
    lines = result.stdout.splitlines()
    assert line_index(lines, "Connection established: ") < line_index(lines, "Binary audio data length: ")
    assert line_index(lines, "Speech synthesis completed.") < line_index(lines, "Connection closed: ")
    # streaming_complete() returned after on_close: the metric line is printed last
    assert lines[-1].startswith("[Metric]")
    request_id, delay = metric(result.stdout)
    assert request_id == task.task_id and 0 <= delay < STEP * 1000


def test_word_timestamps(tmp_path: Path, server: ServerHandle) -> None:
    result = run_example("word_timestamps", tmp_path, server)
    (task,) = server.server.tasks
    assert task.parameters["word_timestamp_enabled"] is True
    assert task.parameters["voice"] == "longyingjing_v3"
    words = [
        ast.literal_eval(line.removeprefix("word: "))
        for line in result.stdout.splitlines()
        if line.startswith("word: ")
    ]
    assert [w["text"] for w in words] == ["What", "is", "the", "weather", "like", "today?"]
    for word in words:
        assert set(word) >= {"text", "begin_index", "end_index", "begin_time", "end_time"}
        assert 0 <= word["begin_time"] < word["end_time"]
    assert [w["begin_time"] for w in words] == sorted(w["begin_time"] for w in words)
    assert "sentence: " in result.stdout
    request_id, _ = metric(result.stdout)
    assert request_id == task.task_id
    assert_mp3(tmp_path / "output.mp3", task.audio_bytes_sent)


def test_readme_claim_names_exactly_the_lines_that_change() -> None:
    """The README's promise about SDK programs matches what these tests change in them."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    claim = readme[readme.index("synchronous API") : readme.index("embedded DashScope-compatible server")]
    claim = " ".join(claim.split())
    assert "one import line" not in claim
    # Every line these tests change, and only those, is named there.
    assert set(IMPORT_REWRITES) == {
        "import dashscope",
        "from dashscope.audio.tts_v2 import *",
        "from dashscope.api_entities.dashscope_response import SpeechSynthesisResponse",
    }
    for named in ("`import dashscope`", "`from dashscope.audio.tts_v2 import *`", "`dashscope.api_entities`"):
        assert named in claim, named
