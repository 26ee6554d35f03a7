"""The `openai` writer: any OpenAI-compatible server through the official `openai` client.

It asks for a JSON-schema `response_format`, which servers with structured outputs
(vLLM, SGLang, llama.cpp, OpenAI) enforce while decoding. Servers without it either refuse
the request (HTTP 400/422) or ignore the field and answer free text (`transformers serve`
5.x logs "Ignoring unsupported fields in the request: {'response_format'}" and answers
200). The writer notices either once, stops sending `response_format` for the rest of its
life, and relies on the schema in the prompt and the shared repair loop instead.

Every failure of the server (unreachable, timeout, refused key, HTTP error) becomes one
`WriterError` line that names the server; the API key never appears in a message.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import openai

from reelsmith.errors import InputError, WriterError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.base import LLMWriter

logger = logging.getLogger(__name__)

NO_KEY = "EMPTY"  # what local servers get when no key is set: they accept any


class _RequestRefused(WriterError):
    """HTTP 400/422: the server understood the request and refused it.

    Attributes:
        reason: The server's own words.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class OpenAIWriter(LLMWriter):
    """Writes screenplays with a model behind an OpenAI-compatible chat-completions API.

    Args:
        base_url: The API root, usually ending in `/v1`, e.g. `http://localhost:8000/v1`.
        api_key: Sent as a bearer token; None sends a placeholder (local servers).
        model: Model name; None asks the server's `/v1/models` and takes the first.
        timeout: Seconds to wait for one answer.
        max_retries: Retries after connection errors, timeouts, 408/409/429 and 5xx
            answers, with exponential backoff (the `openai` client's own retries).
        max_attempts: Answers the repair loop asks for before it gives up.
        temperature: Sampling temperature.
        max_tokens: Most tokens one answer may have; None leaves it to the server.
        strict: The `strict` flag of the JSON schema. OpenAI's strict mode wants every
            property required, which the Screenplay schema (with defaults) is not, so off.
        response_format: Ask for the JSON-schema `response_format` (until the server shows
            it refuses or ignores it); False puts the schema in the prompt only.

    Raises:
        InputError: An argument is out of range or the URL is not an http(s) URL.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        model: str | None = None,
        *,
        timeout: float = 120.0,
        max_retries: int = 2,
        max_attempts: int = 3,
        temperature: float = 0.6,
        max_tokens: int | None = None,
        strict: bool = False,
        response_format: bool = True,
    ) -> None:
        super().__init__(max_attempts)
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(
                f"the OpenAI base URL {_hide_userinfo(base_url)!r} is not an http(s) URL; "
                "expected e.g. http://localhost:8000/v1"
            )
        if timeout <= 0:
            raise InputError(f"timeout must be more than 0 s, got {timeout}")
        if max_retries < 0:
            raise InputError(f"max_retries must be 0 or more, got {max_retries}")
        if not 0 <= temperature <= 2:
            raise InputError(f"temperature must be between 0 and 2, got {temperature}")
        if max_tokens is not None and max_tokens < 1:
            raise InputError(f"max_tokens must be at least 1, got {max_tokens}")
        self.url = _hide_userinfo(base_url)  # for messages
        self.model = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.strict = strict
        self.use_response_format = response_format
        self._api_key = api_key or NO_KEY
        self._client = openai.OpenAI(
            base_url=base_url, api_key=self._api_key, timeout=timeout, max_retries=max_retries
        )

    def __repr__(self) -> str:  # never print the key
        return f"OpenAIWriter(base_url={self.url!r}, model={self.model!r})"

    # -- one answer -------------------------------------------------------------------

    def complete(
        self, messages: list[dict[str, str]], schema: dict, seed: int, brief: Brief | None = None
    ) -> str:
        """Ask the server once; with `response_format` while the server seems to honour it."""
        request: dict[str, Any] = {
            "model": self.model or self._first_model(),
            "messages": messages,
            "temperature": self.temperature,
            "seed": seed,
        }
        if self.max_tokens is not None:
            request["max_tokens"] = self.max_tokens
        if not self.use_response_format:
            text, _ = self._chat(request)
            return text

        response_format = {
            "type": "json_schema",
            "json_schema": {"name": "screenplay", "schema": schema, "strict": self.strict},
        }
        try:
            text, finish_reason = self._chat({**request, "response_format": response_format})
        except _RequestRefused as refusal:
            text, _ = self._chat(request)  # once without it; if that fails too, say why
            self._stop_response_format(f"refuses response_format ({refusal.reason})")
            return text
        if not _may_follow_schema(text, finish_reason):
            self._stop_response_format("ignores response_format (its answer is not JSON)")
        return text

    def _stop_response_format(self, why: str) -> None:
        self.use_response_format = False
        logger.warning(
            "the server at %s %s: from now on the schema goes in the prompt only, "
            "and the repair loop checks the answers",
            self.url,
            why,
        )

    # -- the server -------------------------------------------------------------------

    def _chat(self, request: dict[str, Any]) -> tuple[str, str | None]:
        """Send one chat-completion request; return (text, finish_reason)."""
        try:
            completion = self._client.chat.completions.create(**request)
        except openai.OpenAIError as exc:
            model = request["model"]
            raise self._error(exc, f"model '{model}'", "the model name and the base URL") from None
        if not completion.choices:
            raise WriterError(f"the server at {self.url} answered with no choices")
        choice = completion.choices[0]
        return choice.message.content or "", choice.finish_reason

    def _first_model(self) -> str:
        """Ask the server which models it serves; remember and return the first."""
        try:
            models = self._client.models.list().data
        except openai.OpenAIError as exc:
            error = self._error(exc, "model list", "the base URL")
            raise WriterError(f"{error}; or pass the model name (--model)") from None
        if not models:
            raise WriterError(
                f"the server at {self.url} lists no models; pass the model name (--model)"
            )
        self.model = models[0].id
        logger.info("the server at %s serves %s: using it", self.url, self.model)
        return self.model

    def _error(self, exc: openai.OpenAIError, asked_for: str, check: str) -> WriterError:
        """One line for the user: which server, what went wrong; never the key.

        Args:
            exc: What the client raised.
            asked_for: What the request wanted, for 404s ("model 'x'", "model list").
            check: What the user should check after a 404.
        """
        tries = "1 try" if self.max_retries == 0 else f"{self.max_retries + 1} tries"
        if isinstance(exc, openai.APITimeoutError):
            message = f"the server at {self.url} did not answer within {self.timeout:g} s ({tries})"
            return WriterError(self._scrub(message))
        if isinstance(exc, openai.APIConnectionError):
            message = f"cannot reach the server at {self.url}: {_cause(exc)} ({tries})"
            return WriterError(self._scrub(message))
        if not isinstance(exc, openai.APIStatusError):
            message = f"the server at {self.url} gave an unusable answer: {exc}"
            return WriterError(self._scrub(message))

        status, reason = exc.status_code, _reason(exc)
        if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
            message = f"the server at {self.url} refused the API key (HTTP {status}): {reason}"
        elif isinstance(exc, openai.NotFoundError):
            message = (
                f"the server at {self.url} has no {asked_for} (HTTP 404: {reason}); check "
                f"{check} (the API root, often ending in /v1)"
            )
        elif isinstance(exc, openai.BadRequestError | openai.UnprocessableEntityError):
            message = f"the server at {self.url} refused the request (HTTP {status}): {reason}"
            return _RequestRefused(self._scrub(message), self._scrub(reason))
        elif status == 429 or status >= 500:
            message = f"the server at {self.url} failed (HTTP {status}, {tries}): {reason}"
        else:
            message = f"the server at {self.url} answered HTTP {status}: {reason}"
        return WriterError(self._scrub(message))

    def _scrub(self, text: str) -> str:
        one_line = " ".join(text.split())
        if self._api_key != NO_KEY:
            one_line = one_line.replace(self._api_key, "<api key>")
        return one_line


def _may_follow_schema(text: str, finish_reason: str | None) -> bool:
    """False when `text` shows that the server did not constrain it to a JSON object."""
    body = text.strip()
    if not body.startswith("{"):
        return False
    if finish_reason == "length":  # cut off: an unfinished object proves nothing
        return True
    try:
        json.loads(body)
    except json.JSONDecodeError:
        return False
    return True


def _reason(exc: openai.APIStatusError) -> str:
    """The server's own words from an error body: OpenAI, FastAPI and plain styles."""
    body = exc.body
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if body.get(key):
                body = body[key]
                break
    if isinstance(body, dict | list):
        body = json.dumps(body)
    text = str(body) if body else exc.message
    return text[:300] + ("…" if len(text) > 300 else "")


def _cause(exc: BaseException) -> str:
    """The lowest-level reason of a connection error, e.g. '[Errno 111] Connection refused'."""
    reason = str(exc)
    while exc.__cause__ is not None:
        exc = exc.__cause__
        reason = str(exc) or reason
    return reason


def _hide_userinfo(url: str | None) -> str:
    """The URL without any 'user:password@' part, for messages."""
    parts = urlsplit(url or "")
    if parts.username is None and parts.password is None:
        return url or ""
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
