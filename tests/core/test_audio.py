import numpy as np
import pytest

from cosyvoice_stream.audio import PcmConverter, pcm_duration, read_wav, wav_bytes


def test_odd_bytes_are_carried_between_frames() -> None:
    conv = PcmConverter(24000, 24000)
    data = np.arange(100, dtype=np.int16).tobytes()
    out = conv.convert(data[:51]) + conv.convert(data[51:])
    assert out == data
    assert not conv.resampling


@pytest.mark.parametrize(("src", "dst"), [(44100, 32000), (24000, 16000), (16000, 48000)])
def test_streaming_resampling_keeps_length_and_continuity(src: int, dst: int) -> None:
    t = np.arange(src) / src
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16).tobytes()
    conv = PcmConverter(src, dst)
    out = b"".join(conv.convert(tone[i : i + 999]) for i in range(0, len(tone), 999)) + conv.flush()
    assert len(out) % 2 == 0
    assert abs(len(out) // 2 - dst) <= 2
    samples = np.frombuffer(out, dtype=np.int16).astype(np.float64)
    # a clean 440 Hz tone: the spectrum peak stays at 440 Hz
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(np.argmax(spectrum) * dst / len(samples) - 440) < 3


def test_wav_round_trip() -> None:
    pcm = np.arange(-50, 50, dtype=np.int16).tobytes()
    assert read_wav(wav_bytes(pcm, 16000)) == (pcm, 16000)
    assert pcm_duration(32000, 16000) == 1.0
