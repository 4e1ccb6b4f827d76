"""A cloned voice speaks on the embedded server, only with its target model, and not after deletion."""

from __future__ import annotations

from pathlib import Path

import pytest

from cosyvoice_stream import AsyncSynthesizer
from cosyvoice_stream.errors import VoiceModelMismatchError
from cosyvoice_stream.server import ServerHandle
from cosyvoice_stream.sync import SpeechSynthesizer, VoiceEnrollmentService

from .conftest import API_KEY


def _speak(server: ServerHandle, model: str, voice: str) -> bytes:
    synthesizer = SpeechSynthesizer(model=model, voice=voice, url=server.url, api_key=API_KEY)
    try:
        audio = synthesizer.call("Hello from a cloned voice.", timeout_millis=20_000)
    finally:
        synthesizer.close()
    assert audio is not None
    return audio


def test_a_cloned_voice_speaks_only_with_its_target_model(
    enrollment_server: ServerHandle, samples: Path
) -> None:
    service = VoiceEnrollmentService(api_key=API_KEY, base_address=enrollment_server.server.enrollment_url)
    voice_id = service.create_voice("cosyvoice-v3-plus", "speaker", (samples / "good.wav").as_uri())

    assert len(_speak(enrollment_server, "cosyvoice-v3-plus", voice_id)) > 1000
    # Same generation, other model: the client lets it through, the server refuses it as the service does.
    with pytest.raises(VoiceModelMismatchError):
        _speak(enrollment_server, "cosyvoice-v3-flash", voice_id)

    service.update_voice(voice_id, (samples / "other.wav").as_uri())
    assert len(_speak(enrollment_server, "cosyvoice-v3-plus", voice_id)) > 1000

    service.delete_voice(voice_id)
    with pytest.raises(VoiceModelMismatchError):
        _speak(enrollment_server, "cosyvoice-v3-plus", voice_id)


async def test_a_never_cloned_id_is_refused_by_the_asyncio_client(enrollment_server: ServerHandle) -> None:
    async with AsyncSynthesizer(
        "cosyvoice-v2", "cosyvoice-v2-ghost-0123456789abcdef", url=enrollment_server.url, api_key=API_KEY
    ) as synthesizer:
        with pytest.raises(VoiceModelMismatchError):
            await synthesizer.synthesize_audio("Nobody cloned me.")
