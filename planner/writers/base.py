"""The ScriptWriter protocol, the brief it takes, and the repair loop LLM writers share."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from pydantic import ValidationError

from reelsmith.errors import InputError, WriterError
from reelsmith.planner import prompts
from reelsmith.planner.brief import Brief
from reelsmith.schema.screenplay import Screenplay, describe_errors


@runtime_checkable
class ScriptWriter(Protocol):
    """Anything that turns a brief into a valid Screenplay."""

    name: str

    def write(self, brief: Brief) -> Screenplay: ...


@dataclass
class Attempt:
    """One answer of a model and what was wrong with it."""

    text: str
    errors: list[str] = field(default_factory=list)


class LLMWriter(ABC):
    """A writer backed by a language model, with the shared repair loop.

    Subclasses implement `complete`: send chat messages (and, where the backend can
    enforce it, the JSON schema) and return the model's text. `write` parses and validates
    the answer; when it is invalid the errors go back to the model, at most
    `max_attempts` times in all, then a `WriterError` lists what was wrong.
    """

    name = "llm"

    def __init__(self, max_attempts: int = 3) -> None:
        if max_attempts < 1:
            raise InputError(f"max_attempts must be at least 1, got {max_attempts}")
        self.max_attempts = max_attempts
        self.attempts: list[Attempt] = []

    @abstractmethod
    def complete(
        self, messages: list[dict[str, str]], schema: dict, seed: int, brief: Brief
    ) -> str:
        """Return the model's answer to `messages`, constrained to `schema` if possible.

        `brief` is the request being written, for backends that bound decoding by its counts.
        """

    def write(self, brief: Brief) -> Screenplay:
        schema = Screenplay.model_json_schema()
        messages = prompts.write_messages(brief, schema)
        self.attempts = []
        for attempt in range(self.max_attempts):
            text = self.complete(messages, schema, seed=brief.seed + attempt, brief=brief)
            screenplay, errors = parse_screenplay(text)
            self.attempts.append(Attempt(text, errors))
            if screenplay is not None:
                return screenplay
            messages = [
                *messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": prompts.repair_message(errors)},
            ]
        last = "; ".join(self.attempts[-1].errors[:5])
        more = len(self.attempts[-1].errors) - 5
        if more > 0:
            last += f"; and {more} more"
        raise WriterError(
            f"the {self.name} writer's model gave no valid screenplay in "
            f"{self.max_attempts} attempt(s); last problems: {last}"
        )


def parse_screenplay(text: str) -> tuple[Screenplay | None, list[str]]:
    """Parse a model's answer; return the screenplay or the list of problems."""
    body = _strip_fences(text)
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, [f"the answer is not valid JSON: {exc}"]
    if not isinstance(data, dict):
        return None, [f"the answer must be a JSON object, got {type(data).__name__}"]
    try:
        return Screenplay.model_validate(data), []
    except ValidationError as exc:
        return None, describe_errors(exc)


def _strip_fences(text: str) -> str:
    """Models often wrap JSON in a Markdown code fence; take what is inside."""
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.split("\n", 1)[1] if "\n" in stripped else ""
        if stripped.rstrip().endswith("```"):
            stripped = stripped.rstrip()[:-3]
    return stripped.strip()
