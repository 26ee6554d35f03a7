"""Script writers: everything that turns a brief into a Screenplay.

| name           | what it runs                                                        |
| -------------- | ------------------------------------------------------------------- |
| `offline`      | no model: a deterministic screenplay in the storyworld's vocabulary |
| `openai`       | any OpenAI-compatible server (`vllm serve`, `transformers serve`, llama.cpp …) |
| `transformers` | a local model folder, grammar-constrained decoding with xgrammar    |
| `vllm`         | vLLM in process, with structured outputs                            |
"""

from __future__ import annotations

from reelsmith.errors import InputError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.base import LLMWriter, ScriptWriter

WRITERS = ("offline", "openai", "transformers", "vllm")


def make_writer(
    name: str,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    timeout: float = 120.0,
    max_attempts: int = 3,
    trust_remote_code: bool = False,
) -> ScriptWriter:
    """The writer called `name`, configured; unknown names raise `InputError`."""
    # each writer is imported lazily: the model-backed ones bring openai, transformers or vllm
    if name == "offline":
        from reelsmith.planner.writers.offline import OfflineWriter

        return OfflineWriter()
    if name == "openai":
        from reelsmith.planner.writers.openai_server import OpenAIWriter

        if not base_url:
            raise InputError(
                "the openai writer needs a server: pass --base-url or set OPENAI_BASE_URL"
            )
        return OpenAIWriter(
            base_url=base_url,
            api_key=api_key,
            model=model,
            timeout=timeout,
            max_attempts=max_attempts,
        )
    if name in ("transformers", "vllm"):
        if not model:
            raise InputError(f"the {name} writer needs --model (a local model folder)")
        if name == "transformers":
            from reelsmith.planner.writers.transformers_local import TransformersWriter

            return TransformersWriter(
                model, max_attempts=max_attempts, trust_remote_code=trust_remote_code
            )
        from reelsmith.planner.writers.vllm_local import VLLMWriter

        return VLLMWriter(model, max_attempts=max_attempts, trust_remote_code=trust_remote_code)
    raise InputError(f"unknown writer '{name}'; use one of {', '.join(WRITERS)}")


__all__ = ["WRITERS", "Brief", "LLMWriter", "ScriptWriter", "make_writer"]
