"""``cosyvoice-stream voices``: list the voice catalogue, filter it, preview a voice.

    cosyvoice-stream voices [--model v3-flash] [--language en] [--supports ssml] [--json]
    cosyvoice-stream voices preview VOICE [-o FILE.wav] [--text TEXT] [--play]

The listing and its filters are plain functions (``filter_voices``,
``format_table``, ``voices_json``) so ``pipecat cosyvoice voices`` prints the
same thing. Unknown models, languages or features are errors, never an
empty list.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

from .voices import (
    CATALOGUE,
    CLONE_ONLY_MODELS,
    FEATURES,
    KNOWN_MODELS,
    MODEL_ALIASES,
    VOICES,
    Voice,
    cloned_voice_target,
    get_voice,
    resolve_model,
)

#: Language codes of the catalogue (zh, yue, en, ja, ko, id).
CATALOGUE_LANGUAGES: tuple[str, ...] = tuple(dict.fromkeys(lang for v in VOICES for lang in v.languages))
PREVIEW_SAMPLE_RATE = 24000
#: Command-line audio players tried in order for ``voices preview --play``.
PLAYERS: tuple[tuple[str, ...], ...] = (
    ("paplay",),
    ("aplay", "-q"),
    ("afplay",),
    ("ffplay", "-nodisp", "-autoexit", "-loglevel", "quiet"),
)
_PREVIEW_TEXTS = {
    "zh": "你好，我是{name}。欢迎使用 CosyVoice 语音合成。",
    "yue": "你好，我係{name}。歡迎使用 CosyVoice。",
    "en": "Hello, this is {voice}. Welcome to CosyVoice speech synthesis.",
    "ja": "こんにちは。CosyVoice の音声合成へようこそ。",
    "ko": "안녕하세요. CosyVoice 음성 합성에 오신 것을 환영합니다.",
    "id": "Halo, selamat datang di sintesis suara CosyVoice.",
}


class VoiceFilterError(ValueError):
    """A filter names a model, language or feature the catalogue does not have."""


def filter_voices(
    model: str | None = None,
    language: str | None = None,
    supports: Iterable[str] = (),
) -> list[Voice]:
    """The catalogue voices matching every filter given.

    ``model``: a model or its short alias (``v3-flash``). ``language``: a
    catalogue language code (``zh``, ``yue``, ``en``, ``ja``, ``ko``, ``id``),
    optionally with a region (``en-GB``, ``en-US``). ``supports``: features
    from ``ssml``, ``instruct``, ``timestamps``; all must be supported.
    Raises ``VoiceFilterError`` for anything unknown.
    """
    voices = list(VOICES)
    if model is not None:
        full = resolve_model(model)
        if full is None:
            known = ", ".join(f"{m} ({a})" for a, m in MODEL_ALIASES.items())
            raise VoiceFilterError(f"unknown model {model!r}: expected one of {known}")
        voices = [v for v in voices if full in v.models]
    if language is not None:
        primary, _, region = language.strip().replace("_", "-").partition("-")
        primary = primary.lower()
        if primary not in CATALOGUE_LANGUAGES:
            raise VoiceFilterError(
                f"unknown language {language!r}: expected one of {', '.join(CATALOGUE_LANGUAGES)}"
                " (optionally with a region, such as en-GB)"
            )
        voices = [v for v in voices if primary in v.languages]
        if region:
            variant = f"{primary}-{region.upper()}"
            voices = [v for v in voices if any(x.startswith(variant) for x in v.language_variants)]
    features = list(supports)
    for feature in features:
        if feature not in FEATURES:
            raise VoiceFilterError(f"unknown feature {feature!r}: expected one of {', '.join(FEATURES)}")
    return [v for v in voices if all(v.supports(f) for f in features)]


def _short(model: str) -> str:
    return model.removeprefix("cosyvoice-")


def format_table(voices: Sequence[Voice]) -> str:
    """The voices as an aligned text table, one per line, with a header."""
    rows = [("voice", "models", "languages", "ssml", "instruct", "timestamps", "name / traits")]
    for v in voices:
        description = " ".join(part for part in (v.name, v.traits or v.scenario or "") if part)
        rows.append(
            (
                v.id,
                ",".join(_short(m) for m in v.models),
                ",".join(v.languages),
                "yes" if v.ssml else "no",
                "yes" if v.instruct else "no",
                "yes" if v.word_timestamps else "no",
                description,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    )


def voices_json(voices: Sequence[Voice]) -> str:
    """The voices as JSON, with the catalogue's compile date and sources."""
    return json.dumps(
        {
            "compiled": CATALOGUE.compiled.isoformat(),
            "sources": list(CATALOGUE.sources),
            "count": len(voices),
            "voices": [v.to_dict() for v in voices],
        },
        ensure_ascii=False,
        indent=2,
    )


def listing(
    model: str | None = None,
    language: str | None = None,
    supports: Iterable[str] = (),
    *,
    as_json: bool = False,
) -> tuple[str, str | None]:
    """What ``voices`` prints: the listing, and a note for stderr (or None).

    Raises ``VoiceFilterError`` for an unknown filter.
    """
    voices = filter_voices(model, language, supports)
    note: str | None = None
    full = resolve_model(model) if model is not None else None
    if full in CLONE_ONLY_MODELS:
        note = f"{full} has no system voices: it speaks cloned or designed voices only"
    elif not voices:
        note = "no voice matches these filters"
    else:
        note = f"{len(voices)} voices (voice list compiled {CATALOGUE.compiled.isoformat()})"
    if as_json:
        return voices_json(voices), note
    return (format_table(voices) if voices else ""), note


# -- preview -----------------------------------------------------------------


def preview_text(voice: Voice | None) -> str:
    """A short sample in the voice's first language (English for unknown voices)."""
    language = voice.languages[0] if voice is not None and voice.languages else "en"
    template = _PREVIEW_TEXTS.get(language, _PREVIEW_TEXTS["en"])
    name = voice.name if voice is not None else ""
    return template.format(name=name, voice=voice.id if voice is not None else "a CosyVoice voice")


def preview_model(voice: str, model: str | None) -> str:
    """The model to preview ``voice`` with: the one given, else the voice's own."""
    if model is not None:
        full = resolve_model(model)
        if full is None:
            raise VoiceFilterError(f"unknown model {model!r}: expected one of {', '.join(KNOWN_MODELS)}")
        return full
    known = get_voice(voice)
    if known is not None:
        return known.models[0]
    target = cloned_voice_target(voice)
    if target is not None:
        return target
    raise VoiceFilterError(
        f"voice {voice!r} is not in the voice list: give its model with --model"
        " (`cosyvoice-stream voices` lists the system voices)"
    )


@contextlib.asynccontextmanager
async def _service(url: str | None, engine: str) -> AsyncIterator[str | None]:
    """The cloud (None: the default endpoint) with a key or a URL, else an embedded server."""
    if url or os.environ.get("DASHSCOPE_API_KEY") or os.environ.get("DASHSCOPE_WEBSOCKET_BASE_URL"):
        yield url
        return
    from .server import EmbeddedServer, ServerConfig

    async with EmbeddedServer(ServerConfig(engine=engine)) as server:  # type: ignore[arg-type]
        yield server.url


async def synthesize_preview(
    voice: str, model: str, text: str, *, url: str | None = None, engine: str = "espeak"
) -> tuple[bytes, str]:
    """The sample as 16-bit mono PCM at ``PREVIEW_SAMPLE_RATE``, and where it was made."""
    from .aio import AsyncSynthesizer

    async with _service(url, engine) as service:
        async with AsyncSynthesizer(
            model=model,
            voice=voice,
            url=service,
            sample_rate=PREVIEW_SAMPLE_RATE,
            keep_warm=0,
            prestart=False,
        ) as synth:
            result = await synth.synthesize_audio(text)
    where = "embedded server" if service and service.startswith("ws://127.") else "cloud"
    return result.audio, where


def find_player() -> list[str] | None:
    """The first command-line audio player on PATH, or None."""
    for command in PLAYERS:
        path = shutil.which(command[0])
        if path is not None:
            return [path, *command[1:]]
    return None


def _preview(args: argparse.Namespace) -> int:
    from .audio import wav_bytes

    try:
        model = preview_model(args.voice, args.model)
    except VoiceFilterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    player = find_player() if args.play else None
    if args.play and player is None:
        names = ", ".join(c[0] for c in PLAYERS)
        print(f"error: no audio player found ({names}); write a WAV with -o instead", file=sys.stderr)
        return 2
    output = Path(args.output or f"preview-{args.voice}.wav")
    if not output.parent.is_dir() or output.is_dir():
        print(f"error: cannot write {output}: its folder does not exist or it is a folder", file=sys.stderr)
        return 2
    text = args.text or preview_text(get_voice(args.voice))
    audio, where = asyncio.run(synthesize_preview(args.voice, model, text, url=args.url, engine=args.engine))
    output.write_bytes(wav_bytes(audio, PREVIEW_SAMPLE_RATE))
    seconds = len(audio) / (2 * PREVIEW_SAMPLE_RATE)
    print(f"wrote {output} ({seconds:.2f} s, {args.voice} on {model}) via {where}")
    if player is not None:
        subprocess.run([*player, str(output)], check=False, timeout=max(10.0, seconds + 10.0))
    return 0


def add_voices_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``voices`` command's options and its ``preview`` sub-command."""
    aliases = ", ".join(MODEL_ALIASES)
    parser.add_argument("--model", "-m", help=f"only voices of this model ({aliases}, or the full name)")
    parser.add_argument(
        "--language",
        "-l",
        help=f"only voices speaking this language ({', '.join(CATALOGUE_LANGUAGES)}; en-GB / en-US too)",
    )
    parser.add_argument(
        "--supports",
        action="append",
        default=[],
        choices=FEATURES,
        help="only voices supporting this feature (repeat for several)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (with the list's date and sources)")
    actions = parser.add_subparsers(dest="voices_action")
    preview = actions.add_parser(
        "preview", help="speak a sample with a voice (embedded server offline, cloud with a key)"
    )
    preview.add_argument("voice", help="the voice id")
    preview.add_argument("--model", "-m", dest="model", help="model (default: the voice's own)")
    preview.add_argument("--text", help="what to say (default: a sample in the voice's language)")
    preview.add_argument("-o", "--output", help="WAV file to write (default: preview-VOICE.wav)")
    preview.add_argument("--play", action="store_true", help="also play it (paplay, aplay, afplay or ffplay)")
    preview.add_argument("--url", help="service URL (default: cloud with a key, else an embedded server)")
    preview.add_argument("--engine", default="espeak", choices=("espeak", "tone"), help="embedded engine")


def run_voices(args: argparse.Namespace) -> int:
    """Run ``voices`` (list) or ``voices preview``; returns the exit status."""
    if getattr(args, "voices_action", None) == "preview":
        return _preview(args)
    try:
        text, note = listing(args.model, args.language, args.supports, as_json=args.json)
    except VoiceFilterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if text:
        print(text)
    if note:
        print(note, file=sys.stderr)
    return 0


def _update_main(argv: Sequence[str]) -> int:
    """``python -m cosyvoice_stream.voices_cli SOURCE``: refresh the packaged voice list."""
    from .voices import load_catalogue, update_catalogue

    if len(argv) != 1:
        print("usage: python -m cosyvoice_stream.voices_cli PATH/TO/cosyvoice-voices.json", file=sys.stderr)
        return 2
    written = update_catalogue(argv[0])
    updated = load_catalogue(written)
    print(f"{written}: {len(updated)} voices, compiled {updated.compiled.isoformat()}")
    print(
        "next: update the voice literals in adapters/livekit/plugins/cosyvoice/models.py"
        " (tests/livekit/test_livekit_plugin.py compares them with the list)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(_update_main(sys.argv[1:]))
