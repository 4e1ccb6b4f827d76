"""The SSML subset the server understands, turned into sentences.

``<speak>`` (the root), ``<break time="500ms"|"1s" strength=...>`` (silence),
``<sub alias>`` (the alias is spoken), ``<say-as>`` (its text is spoken),
``<phoneme alphabet ph>`` (the text is spoken; the espeak engine reads ``ph``
when ``alphabet`` is ``"x-espeak"``/``"espeak"``). Any other element is
transparent: its text content is spoken.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from .model import BreakPart, Part, Sentence, TextPart
from .segmenter import plain_characters, split_sentences

MAX_BREAK_MS = 10_000
_BREAK_STRENGTH_MS = {
    "none": 0,
    "x-weak": 125,
    "weak": 250,
    "medium": 500,
    "strong": 750,
    "x-strong": 1000,
}
_TIME_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)\s*$", re.IGNORECASE)
_FORBIDDEN_RE = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


class SsmlError(ValueError):
    """The document is not SSML the server can read; the message says why."""


@dataclass
class SsmlDocument:
    """The spoken-text view of a document: its text and parts at absolute positions."""

    text: str = ""
    #: (position in ``text``, part); text parts carry absolute spans.
    parts: list[tuple[int, Part]] = field(default_factory=list)

    def add_text(self, text: str | None) -> None:
        if not text:
            return
        text = _flatten_space(text)
        start = len(self.text)
        self.text += text
        if self.parts:
            pos, last = self.parts[-1]
            if isinstance(last, TextPart) and last.literal and last.end == start:
                merged = TextPart(last.spoken + text, last.start, start + len(text))
                self.parts[-1] = (pos, merged)
                return
        self.parts.append((start, TextPart(text, start, start + len(text))))

    def add_special(self, display: str, spoken: str, phonemes: str | None, alphabet: str | None) -> None:
        display = _flatten_space(display)
        start = len(self.text)
        self.text += display
        self.parts.append((start, TextPart(spoken, start, start + len(display), phonemes, alphabet)))

    def add_break(self, ms: int) -> None:
        self.parts.append((len(self.text), BreakPart(ms)))


def _flatten_space(text: str) -> str:
    # Layout whitespace inside markup is not a sentence end; same length keeps counts.
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


def _local(tag: object) -> str:
    if not isinstance(tag, str):
        return ""
    return tag.rsplit("}", 1)[-1].lower()


def parse_break(element: ET.Element) -> int:
    time = element.get("time")
    if time is not None:
        match = _TIME_RE.match(time)
        if match is None:
            raise SsmlError(f'<break time="{time}"> is invalid: expected e.g. "500ms" or "1s"')
        value = float(match.group(1)) * (1000.0 if match.group(2).lower() == "s" else 1.0)
        ms = round(value)
    else:
        strength = (element.get("strength") or "medium").lower()
        if strength not in _BREAK_STRENGTH_MS:
            raise SsmlError(
                f'<break strength="{strength}"> is invalid: expected one of {", ".join(_BREAK_STRENGTH_MS)}'
            )
        ms = _BREAK_STRENGTH_MS[strength]
    if not 0 <= ms <= MAX_BREAK_MS:
        raise SsmlError(f"<break> of {ms} ms is invalid: expected 0 to {MAX_BREAK_MS} ms")
    return ms


def parse_ssml(document: str) -> SsmlDocument:
    """Parse an SSML document; raises ``SsmlError`` naming the XML problem."""
    if _FORBIDDEN_RE.search(document):
        raise SsmlError("SSML must not contain a DOCTYPE or ENTITY declaration")
    try:
        root = ET.fromstring(document.strip())
    except ET.ParseError as exc:
        raise SsmlError(f"SSML is not well-formed XML: {exc}") from None
    if _local(root.tag) != "speak":
        raise SsmlError(f"SSML root element must be <speak>, not <{_local(root.tag)}>")
    doc = SsmlDocument()
    _walk(root, doc)
    return doc


def _walk(element: ET.Element, doc: SsmlDocument) -> None:
    tag = _local(element.tag)
    if tag == "break":
        doc.add_break(parse_break(element))
        return
    if tag == "sub":
        content = "".join(element.itertext())
        alias = element.get("alias")
        doc.add_special(content, alias if alias is not None else content, None, None)
        return
    if tag == "phoneme":
        content = "".join(element.itertext())
        doc.add_special(content, content, element.get("ph"), element.get("alphabet"))
        return
    doc.add_text(element.text)
    for child in element:
        _walk(child, doc)
        doc.add_text(child.tail)


def ssml_sentences(document: str) -> list[Sentence]:
    """The sentences of an SSML document, parts assigned to the sentence they fall in."""
    doc = parse_ssml(document)
    pieces = split_sentences(doc.text)
    if not pieces:
        parts = tuple(part for _, part in doc.parts if isinstance(part, BreakPart))
        return [Sentence("", parts, 0)] if parts else []
    bounds: list[tuple[int, int]] = []
    pos = 0
    for piece in pieces:
        bounds.append((pos, pos + len(piece)))
        pos += len(piece)
    buckets: list[list[Part]] = [[] for _ in pieces]
    offsets: list[int] = []
    texts: list[str] = []
    for (a, _b), piece in zip(bounds, pieces, strict=True):
        lead = len(piece) - len(piece.lstrip())
        texts.append(piece.strip())
        offsets.append(a + lead)
    for position, part in doc.parts:
        if isinstance(part, BreakPart):
            k = _bucket_for(bounds, position, prefer_previous=True)
            buckets[k].append(part)
            continue
        if not part.literal:
            k = _bucket_for(bounds, position, prefer_previous=False)
            off, size = offsets[k], len(texts[k])
            start = min(max(part.start - off, 0), size)
            end = min(max(part.end - off, start), size)
            buckets[k].append(TextPart(part.spoken, start, end, part.phonemes, part.alphabet))
            continue
        for k, (a, b) in enumerate(bounds):
            lo, hi = max(part.start, offsets[k]), min(part.end, offsets[k] + len(texts[k]))
            if lo >= hi or b <= part.start or a >= part.end:
                continue
            off = offsets[k]
            buckets[k].append(TextPart(doc.text[lo:hi], lo - off, hi - off))
    sentences = []
    for k, text in enumerate(texts):
        characters = plain_characters(doc.text[: bounds[k][1]])
        sentences.append(Sentence(text, tuple(buckets[k]), characters))
    return sentences


def _bucket_for(bounds: list[tuple[int, int]], position: int, *, prefer_previous: bool) -> int:
    for k, (a, b) in enumerate(bounds):
        if prefer_previous and a < position <= b:
            return k
        if not prefer_previous and a <= position < b:
            return k
    return 0 if position <= 0 else len(bounds) - 1


def spoken_text(document: str) -> str:
    """The display text of a document (tags removed), for validity checks."""
    return parse_ssml(document).text
