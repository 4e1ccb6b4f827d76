"""PCM handling: whole-sample framing, streaming resampling (soxr), WAV files."""

from __future__ import annotations

import io
import wave

import numpy as np
import soxr

BYTES_PER_SAMPLE = 2  # 16-bit mono everywhere


class PcmConverter:
    """Turns the service's 16-bit mono PCM stream into whole-sample chunks at ``target_rate``.

    Frames from the network may split a sample; the odd byte is carried to the
    next frame. When the rates differ, soxr's streaming resampler keeps its
    state across chunks (no clicks at chunk edges); ``flush()`` drains it.
    """

    def __init__(self, source_rate: int, target_rate: int) -> None:
        self.source_rate = source_rate
        self.target_rate = target_rate
        self._carry = b""
        self._resampler = (
            soxr.ResampleStream(source_rate, target_rate, 1, dtype="int16", quality="HQ")
            if source_rate != target_rate
            else None
        )

    @property
    def resampling(self) -> bool:
        return self._resampler is not None

    def convert(self, data: bytes) -> bytes:
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) % BYTES_PER_SAMPLE:
            self._carry = data[-1:]
            data = data[:-1]
        if self._resampler is None or not data:
            return data
        samples = np.frombuffer(data, dtype=np.int16)
        return self._resampler.resample_chunk(samples, last=False).tobytes()

    def flush(self) -> bytes:
        """The resampler's tail at the end of the stream (a dangling odd byte is dropped)."""
        self._carry = b""
        if self._resampler is None:
            return b""
        tail = self._resampler.resample_chunk(np.zeros(0, dtype=np.int16), last=True).tobytes()
        return tail


def pcm_duration(num_bytes: int, sample_rate: int) -> float:
    """Seconds of 16-bit mono audio in ``num_bytes``."""
    return num_bytes / (BYTES_PER_SAMPLE * sample_rate)


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    """A complete WAV file holding 16-bit mono ``pcm``."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(BYTES_PER_SAMPLE)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def read_wav(data: bytes) -> tuple[bytes, int]:
    """(pcm, sample_rate) of a 16-bit mono WAV file."""
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != BYTES_PER_SAMPLE or wav.getnchannels() != 1:
            raise ValueError("expected a 16-bit mono WAV file")
        return wav.readframes(wav.getnframes()), wav.getframerate()
