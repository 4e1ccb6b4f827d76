"""The SDK's voice cloning API (``dashscope.audio.tts_v2.VoiceEnrollmentService``).

Same class and exception names, constructor, methods, return values and
``str(exception)`` as dashscope 2.0.2, so SDK code runs unchanged after
``from cosyvoice_stream.sync import VoiceEnrollmentService``. The endpoint is
``base_address=``, else ``cosyvoice_stream.sync.base_http_api_url`` (like
``dashscope.base_http_api_url``), else ``DASHSCOPE_HTTP_BASE_URL``, else the
region, else Beijing.

What differs from the SDK, on purpose: a request is sent once, with a bounded
timeout (``request_timeout=``, 60 s by default), instead of being retried
three times two seconds apart; a transport failure raises
``VoiceEnrollmentException`` (``status_code=None``, ``retryable=True``)
rather than a ``requests`` error; the key travels only in the Authorization
header and no message or repr shows it. See docs/voice-cloning.md.
"""

from __future__ import annotations

import sys
from typing import Any

from ..aio.enrollment import EnrollmentClient
from ..enrollment import (
    EnrollmentReply,
    VoiceEnrollmentError,
    create_voice_input,
    delete_voice_input,
    list_voice_input,
    query_voice_input,
    update_voice_input,
    voice_id_of,
    voice_list_of,
)


class VoiceEnrollmentException(VoiceEnrollmentError):
    """A voice-enrollment request failed; ``str()`` as the SDK's.

    ``Request: <id>, Status Code: <http status>, Code: <code>, Error Message: <message>``.
    Also a ``CosyVoiceError``, with ``request_id``, ``status_code``, ``code``
    and ``retryable`` as attributes (and the SDK's private ``_request_id``,
    ``_status_code``, ``_code``, ``_error_message``).
    """

    def __init__(
        self,
        request_id: str | None,
        status_code: int | None,
        code: str | None,
        error_message: str,
        *,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(request_id, status_code, code, error_message, retryable=retryable)
        self._request_id = request_id
        self._status_code = status_code
        self._code = code
        self._error_message = error_message

    @classmethod
    def from_error(cls, error: VoiceEnrollmentError) -> VoiceEnrollmentException:
        return cls(
            error.request_id, error.status_code, error.code, error.error_message, retryable=error.retryable
        )


def _setting(name: str) -> Any:
    """A module attribute of ``cosyvoice_stream.sync`` (``api_key``, ``base_http_api_url``)."""
    module = sys.modules.get(__package__ or "cosyvoice_stream.sync")
    return getattr(module, name, None)


class VoiceEnrollmentService:
    """API for the voice clone service: create, list, query, update and delete cloned voices.

    ``VoiceEnrollmentService(api_key=None, workspace=None, model=None, **kwargs)``
    as in the SDK (``model`` defaults to ``voice-enrollment``). Keyword
    arguments: ``base_address`` (API root, e.g. ``http://127.0.0.1:8766/api/v1``
    for the embedded server), ``request_timeout`` (seconds), ``headers``;
    any other goes to the request's ``parameters``, as in the SDK.
    """

    def __init__(
        self,
        api_key: str | None = None,
        workspace: str | None = None,
        model: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._client = EnrollmentClient(
            api_key,
            workspace,
            model,
            setting_url=_setting("base_http_api_url"),
            setting_key=_setting("api_key"),
            **kwargs,
        )
        self._last_request_id: str | None = None

    @property
    def model(self) -> str:
        """The enrollment model sent with each request (``voice-enrollment``)."""
        return self._client.model

    @model.setter
    def model(self, value: str) -> None:
        self._client.model = value

    def __repr__(self) -> str:
        return f"VoiceEnrollmentService(base_url={self._client.base_url!r}, api_key=<hidden>)"

    def _call(self, input: dict[str, Any]) -> EnrollmentReply:
        try:
            reply = self._client.call_blocking(input)
        except VoiceEnrollmentError as error:
            self._last_request_id = error.request_id
            raise VoiceEnrollmentException.from_error(error) from None
        self._last_request_id = reply.request_id
        return reply

    def create_voice(
        self,
        target_model: str,
        prefix: str,
        url: str,
        language_hints: list[str] | None = None,
        max_prompt_audio_length: float | None = None,
        **kwargs: Any,
    ) -> str:
        """Create a new cloned voice; returns its id (``<target_model>-<prefix>-<id>``).

        ``target_model``: the model that will speak it (and only that one).
        ``prefix``: letters and digits, at most 10. ``url``: the sample audio.
        ``language_hints``: the sample's language (``["zh"]``, ``["en"]``, ...).
        ``max_prompt_audio_length``: seconds of the sample kept after
        preprocessing. Other keyword arguments go into the request's input.
        """
        try:
            return voice_id_of(
                self._call(
                    create_voice_input(
                        target_model, prefix, url, language_hints, max_prompt_audio_length, kwargs
                    )
                )
            )
        except VoiceEnrollmentException:
            raise
        except VoiceEnrollmentError as error:
            raise VoiceEnrollmentException.from_error(error) from None

    def list_voices(self, prefix: str | None = None, page_index: int = 0, page_size: int = 10) -> list[dict]:
        """One page of created voices: dicts with ``voice_id``, ``gmt_create``, ``gmt_modified``, ``status``."""
        try:
            return voice_list_of(self._call(list_voice_input(prefix, page_index, page_size)))
        except VoiceEnrollmentException:
            raise
        except VoiceEnrollmentError as error:
            raise VoiceEnrollmentException.from_error(error) from None

    def query_voice(self, voice_id: str) -> dict[str, Any]:
        """Details of a voice: ``target_model``, ``resource_link``, ``status``, ``gmt_create``, ``gmt_modified``.

        (The SDK annotates this ``List[str]``; it returns the reply's output dict, as here.)
        """
        return self._call(query_voice_input(voice_id)).output

    def update_voice(self, voice_id: str, url: str) -> None:
        """Re-clone ``voice_id`` from the audio at ``url``."""
        self._call(update_voice_input(voice_id, url))

    def delete_voice(self, voice_id: str) -> None:
        """Delete ``voice_id``."""
        self._call(delete_voice_input(voice_id))

    def get_last_request_id(self) -> str | None:
        """The request id of the last reply, failed ones included."""
        return self._last_request_id
