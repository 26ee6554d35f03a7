"""The one place reelsmith reads environment variables.

Library code takes its settings as arguments; the CLI builds them from flags and from
`Settings.from_env()`. Secrets read here are passed to clients in memory and never written
to a run directory, a log or a checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Environment-provided settings.

    Attributes:
        home: Root of reelsmith's per-user state (series bibles). `REELSMITH_HOME`,
            default `~/.reelsmith`.
        openai_base_url: Base URL of an OpenAI-compatible server. `REELSMITH_OPENAI_BASE_URL`,
            then `OPENAI_BASE_URL`.
        openai_api_key: API key for that server. `REELSMITH_OPENAI_API_KEY`, then
            `OPENAI_API_KEY`. Local servers accept any value.
        openai_model: Model name sent to the server. `REELSMITH_OPENAI_MODEL`.
    """

    home: Path
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = env.get("REELSMITH_HOME") or str(Path.home() / ".reelsmith")
        return cls(
            home=Path(home).expanduser(),
            openai_base_url=env.get("REELSMITH_OPENAI_BASE_URL") or env.get("OPENAI_BASE_URL"),
            openai_api_key=env.get("REELSMITH_OPENAI_API_KEY") or env.get("OPENAI_API_KEY"),
            openai_model=env.get("REELSMITH_OPENAI_MODEL"),
        )

    def __repr__(self) -> str:  # never print the key
        key = "set" if self.openai_api_key else "unset"
        return (
            f"Settings(home={str(self.home)!r}, openai_base_url={self.openai_base_url!r}, "
            f"openai_api_key=<{key}>, openai_model={self.openai_model!r})"
        )
