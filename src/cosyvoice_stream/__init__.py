"""cosyvoice-stream: real-time CosyVoice speech synthesis for voice agents."""

from .aio import AsyncSynthesizer, SynthesisResult, SynthesisStream, Timeouts
from .endpoint import TemporaryTokenProvider
from .errors import (
    AuthenticationError,
    ClientTimeoutError,
    ConnectionLostError,
    CosyVoiceError,
    InstructionError,
    InvalidParameterError,
    ProtocolError,
    ServerError,
    ServerTimeoutError,
    SSMLError,
    TaskCancelledError,
    TextLimitError,
    ThrottlingError,
    VoiceModelMismatchError,
)
from .events import AudioChunk, StreamEvent, SynthesisComplete, TaskMetrics, WordTimestamps
from .options import SUPPORTED_SAMPLE_RATES, AudioFormat, SynthesisOptions
from .text import billable_characters, split_text
from .timestamps import WordTiming
from .version import __version__

__all__ = [
    "SUPPORTED_SAMPLE_RATES",
    "AsyncSynthesizer",
    "AudioChunk",
    "AudioFormat",
    "AuthenticationError",
    "ClientTimeoutError",
    "ConnectionLostError",
    "CosyVoiceError",
    "InstructionError",
    "InvalidParameterError",
    "ProtocolError",
    "SSMLError",
    "ServerError",
    "ServerTimeoutError",
    "StreamEvent",
    "SynthesisComplete",
    "SynthesisOptions",
    "SynthesisResult",
    "SynthesisStream",
    "TaskCancelledError",
    "TaskMetrics",
    "TemporaryTokenProvider",
    "TextLimitError",
    "ThrottlingError",
    "Timeouts",
    "VoiceModelMismatchError",
    "WordTimestamps",
    "WordTiming",
    "__version__",
    "billable_characters",
    "split_text",
]
