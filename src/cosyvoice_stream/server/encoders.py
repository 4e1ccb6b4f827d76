"""Streaming audio encoders: pcm, wav, mp3 and opus (Ogg).

One ``TaskEncoder`` per task. ``encode(samples, last=...)`` returns the bytes
for one chunk of a sentence; ``last=True`` on the sentence's final chunk
flushes the codec so every sentence's audio is complete at its sentence-end
(mp3 and opus restart the codec for the next sentence; the byte stream of a
task stays one valid file). Only the first bytes of a task carry the header
(the RIFF header, or the OpusHead/OpusTags pages).
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

OPUS_SAMPLE_RATES: tuple[int, ...] = (8000, 12000, 16000, 24000, 48000)
_MP3_BIT_RATES = {8000: 64_000, 16000: 128_000, 22050: 160_000, 24000: 160_000}
_STREAMING_DATA_SIZE = 0xFFFFFFFF - 36


class EncoderUnavailableError(RuntimeError):
    """The codec library for a format is missing; the message names it."""


class TaskEncoder(Protocol):
    def encode(self, samples: npt.NDArray[np.int16], *, last: bool) -> bytes: ...


def wav_header(sample_rate: int, data_size: int = _STREAMING_DATA_SIZE) -> bytes:
    """A 44-byte RIFF/WAVE header for mono 16-bit PCM (streaming: unknown length)."""
    riff_size = min(data_size + 36, 0xFFFFFFFF)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


class PcmEncoder:
    def encode(self, samples: npt.NDArray[np.int16], *, last: bool) -> bytes:
        return samples.astype("<i2", copy=False).tobytes()


class WavEncoder:
    def __init__(self, sample_rate: int) -> None:
        self._header: bytes | None = wav_header(sample_rate)

    def encode(self, samples: npt.NDArray[np.int16], *, last: bool) -> bytes:
        data = samples.astype("<i2", copy=False).tobytes()
        if self._header is not None and (data or last):
            data, self._header = self._header + data, None
        return data


def _import_av() -> Any:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise EncoderUnavailableError(
            "mp3 and opus output need PyAV (the 'av' package, FFmpeg with libmp3lame/libopus),"
            " which is not importable here: pip install av"
        ) from exc
    return av


def check_codec(format: str) -> None:
    """Raise ``EncoderUnavailableError`` unless ``format`` can be encoded here."""
    if format not in ("mp3", "opus"):
        return
    av = _import_av()
    name = "libmp3lame" if format == "mp3" else "libopus"
    try:
        av.codec.Codec(name, "w")
    except Exception as exc:
        raise EncoderUnavailableError(
            f"{format} output needs the FFmpeg encoder {name}, which this PyAV build lacks ({exc})"
        ) from None


class _CodecRun:
    """One PyAV encoder instance, fed int16 chunks, flushed at the end."""

    def __init__(self, codec: str, sample_rate: int, bit_rate: int, sample_format: str) -> None:
        av = _import_av()
        self._av = av
        context = av.CodecContext.create(codec, "w")
        context.sample_rate = sample_rate
        context.layout = "mono"
        context.format = sample_format
        context.bit_rate = bit_rate
        context.open()
        self.context = context
        self._format = sample_format
        self._rate = sample_rate
        self._pts = 0

    def packets(self, samples: npt.NDArray[np.int16], *, last: bool) -> list[Any]:
        out: list[Any] = []
        if len(samples):
            frame = self._av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples, dtype=np.int16).reshape(1, -1),
                format=self._format,
                layout="mono",
            )
            frame.sample_rate = self._rate
            frame.pts = self._pts
            self._pts += len(samples)
            out.extend(self.context.encode(frame))
        if last:
            out.extend(self.context.encode(None))
        return out


class Mp3Encoder:
    """Raw MPEG audio frames (no ID3/Xing header); the codec restarts every sentence."""

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self.bit_rate = _MP3_BIT_RATES.get(sample_rate, 256_000)
        self._run: _CodecRun | None = None
        check_codec("mp3")

    def encode(self, samples: npt.NDArray[np.int16], *, last: bool) -> bytes:
        if self._run is None:
            if not len(samples) and last:
                return b""
            self._run = _CodecRun("libmp3lame", self.sample_rate, self.bit_rate, "s16p")
        packets = self._run.packets(samples, last=last)
        if last:
            self._run = None
        return b"".join(bytes(p) for p in packets)


# -- Ogg -------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return table


_CRC_TABLE = _crc_table()


def ogg_crc(data: bytes) -> int:
    crc = 0
    table = _CRC_TABLE
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[((crc >> 24) & 0xFF) ^ byte]
    return crc


class OggWriter:
    """Pages of one logical Ogg stream."""

    def __init__(self, serial: int) -> None:
        self.serial = serial & 0xFFFFFFFF
        self.sequence = 0

    def page(self, packets: list[bytes], granule: int, *, bos: bool = False, eos: bool = False) -> bytes:
        """Pages holding ``packets`` (split over several pages above 255 segments)."""
        out = bytearray()
        segments: list[int] = []
        body = bytearray()
        for packet in packets:
            size = len(packet)
            lacing = [255] * (size // 255) + [size % 255]
            if len(segments) + len(lacing) > 255 and segments:
                out += self._one_page(segments, bytes(body), -1, bos=bos, eos=False, continued=False)
                bos = False
                segments, body = [], bytearray()
            segments.extend(lacing)
            body += packet
        out += self._one_page(segments, bytes(body), granule, bos=bos, eos=eos, continued=False)
        return bytes(out)

    def _one_page(
        self, segments: list[int], body: bytes, granule: int, *, bos: bool, eos: bool, continued: bool
    ) -> bytes:
        flags = (0x01 if continued else 0) | (0x02 if bos else 0) | (0x04 if eos else 0)
        header = bytearray(
            b"OggS" + struct.pack("<BBqIIIB", 0, flags, granule, self.serial, self.sequence, 0, len(segments))
        )
        header += bytes(segments)
        self.sequence += 1
        page = bytearray(header + body)
        page[22:26] = struct.pack("<I", ogg_crc(bytes(page)))
        return bytes(page)


def opus_head(sample_rate: int, pre_skip: int = 312) -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, 1, pre_skip, sample_rate, 0, 0)


def opus_tags(vendor: str = "cosyvoice-stream embedded server") -> bytes:
    raw = vendor.encode()
    return b"OpusTags" + struct.pack("<I", len(raw)) + raw + struct.pack("<I", 0)


class OpusEncoder:
    """Opus in one Ogg stream per task; the codec restarts every sentence."""

    def __init__(self, sample_rate: int, bit_rate_kbps: int, serial: int) -> None:
        if sample_rate not in OPUS_SAMPLE_RATES:
            raise ValueError(f"opus cannot encode {sample_rate} Hz")
        check_codec("opus")
        self.sample_rate = sample_rate
        self.bit_rate = bit_rate_kbps * 1000
        self._ogg = OggWriter(serial)
        self._granule = 0
        self._headers: bytes | None = None
        self._run: _CodecRun | None = None

    def encode(self, samples: npt.NDArray[np.int16], *, last: bool) -> bytes:
        if self._run is None:
            if not len(samples) and last:
                return b""
            self._run = _CodecRun("libopus", self.sample_rate, self.bit_rate, "s16")
            if self._headers is None and self._ogg.sequence == 0:
                head = bytes(self._run.context.extradata or b"") or opus_head(self.sample_rate)
                self._headers = self._ogg.page([head], 0, bos=True) + self._ogg.page([opus_tags()], 0)
        packets = self._run.packets(samples, last=last)
        if last:
            self._run = None
        data = [bytes(p) for p in packets]
        if not data:
            return b""
        # Every packet decodes to a 20 ms frame (48 kHz units in the granule).
        self._granule += 960 * len(data)
        out = self._ogg.page(data, self._granule)
        if self._headers is not None:
            out, self._headers = self._headers + out, None
        return out


def make_encoder(format: str, sample_rate: int, *, bit_rate_kbps: int = 32, serial: int = 1) -> TaskEncoder:
    """The encoder for a task; raises ``EncoderUnavailableError`` when a codec is missing."""
    if format == "pcm":
        return PcmEncoder()
    if format == "wav":
        return WavEncoder(sample_rate)
    if format == "mp3":
        return Mp3Encoder(sample_rate)
    if format == "opus":
        return OpusEncoder(sample_rate, bit_rate_kbps, serial)
    raise ValueError(f"unknown format {format!r}")
