"""The `vllm` writer: an in-process `vllm.LLM` with JSON-schema structured outputs.

vLLM is an optional dependency (`pip install 'reelsmith[vllm]'`) and is imported only when
this writer is built. Decoding uses the same tightened schema as the transformers writer
(`decoding_schema`: string and list bounds, the brief's scene and shot counts), so a weak
model still ends its answer; the shared repair loop checks what a schema cannot.
"""

from __future__ import annotations

from typing import Any

from reelsmith.errors import InputError, WriterError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.base import LLMWriter
from reelsmith.planner.writers.transformers_local import DecodingBounds, decoding_schema

MISSING_VLLM = "the vllm writer needs vllm: pip install 'reelsmith[vllm]'"


class VLLMWriter(LLMWriter):
    """Writes screenplays with a model loaded in this process by vLLM.

    Args:
        model: A local model directory or a model id vLLM can load.
        max_tokens: Most tokens one answer may have.
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        max_attempts: Answers the repair loop asks for before it gives up.
        bounds: Decoding bounds (see `decoding_schema`).
        trust_remote_code: Run Python code shipped with the model. Only for models you trust.
        engine_args: More keyword arguments for `vllm.LLM` (e.g. `max_model_len`,
            `gpu_memory_utilization`, `tensor_parallel_size`).

    Raises:
        WriterError: vLLM is not installed, or it cannot load the model.
    """

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        max_tokens: int = 8192,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_attempts: int = 3,
        bounds: DecodingBounds | None = None,
        trust_remote_code: bool = False,
        engine_args: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(max_attempts)
        if max_tokens < 1:
            raise InputError(f"max_tokens must be at least 1, got {max_tokens}")
        self._vllm = _import_vllm()
        self.model = model
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.bounds = bounds or DecodingBounds()
        try:
            self.llm = self._vllm.LLM(
                model=model, trust_remote_code=trust_remote_code, **(engine_args or {})
            )
        except (OSError, ValueError, RuntimeError) as exc:
            reason = " ".join(str(exc).split())[:300] or type(exc).__name__
            raise WriterError(f"vllm cannot load the model '{model}': {reason}") from None

    def complete(
        self, messages: list[dict[str, str]], schema: dict, seed: int, brief: Brief
    ) -> str:
        """The model's answer, decoded under the schema bounded by the brief's counts."""
        from vllm.sampling_params import StructuredOutputsParams  # lazily: vllm is optional

        sampling_params = self._vllm.SamplingParams(
            structured_outputs=StructuredOutputsParams(
                json=decoding_schema(schema, brief, self.bounds)
            ),
            seed=seed,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
        )
        outputs = self.llm.chat(messages, sampling_params, use_tqdm=False)
        return outputs[0].outputs[0].text


def _import_vllm() -> Any:
    try:
        import vllm  # lazily: vllm is optional (pip install -e ".[vllm]")
    except ModuleNotFoundError as exc:
        if exc.name != "vllm":  # vllm is there but one of its own imports is missing
            raise WriterError(f"vllm is installed but cannot be imported: {exc}") from None
        raise WriterError(MISSING_VLLM) from None
    except ImportError as exc:
        raise WriterError(f"vllm is installed but cannot be imported: {exc}") from None
    return vllm
