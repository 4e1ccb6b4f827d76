"""cosyvoice-stream: real-time CosyVoice speech synthesis for voice agents."""

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
from .options import SUPPORTED_SAMPLE_RATES, AudioFormat, SynthesisOptions
from .text import billable_characters, split_text
from .version import __version__

__all__ = [
    "SUPPORTED_SAMPLE_RATES",
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
    "SynthesisOptions",
    "TaskCancelledError",
    "TextLimitError",
    "ThrottlingError",
    "VoiceModelMismatchError",
    "__version__",
    "billable_characters",
    "split_text",
]
