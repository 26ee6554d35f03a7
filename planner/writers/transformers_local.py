"""The `transformers` writer: a local model directory with grammar-constrained decoding.

The model answers under an xgrammar grammar compiled from the Screenplay JSON schema, so
every answer is JSON that the schema accepts; the shared repair loop in `LLMWriter` then
catches what a schema cannot say (unknown character ids, duplicate ids).

Decoding uses a *tightened* copy of the schema (`decoding_schema`): a subset of what the
Screenplay schema accepts, with bounds that make generation end even when the model is poor:

- free-text strings get a `maxLength` (`DecodingBounds.text_chars`) and ids a shorter
  pattern (`DecodingBounds.id_chars`): under a grammar a weak model keeps a string open
  until its limit, and the Screenplay limits (up to 4000 characters) would outlast any
  `max_new_tokens`;
- arrays get a `maxItems` (`DecodingBounds.items`);
- `scenes` and each scene's `shots` get `minItems: 1` (validation rejects empty ones) and,
  when the brief asks for them, the brief's counts.

xgrammar 0.2.x lets raw control characters (U+0000-U+001F) into length-bounded strings,
which makes the answer invalid JSON (mlc-ai/xgrammar#800); compact JSON never needs one, so
tokens that contain a control character are masked out as well.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import xgrammar as xgr
from transformers import AutoModelForCausalLM, AutoTokenizer

from reelsmith.errors import InputError, WriterError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.base import LLMWriter
from reelsmith.schema.screenplay import ID_PATTERN

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DecodingBounds:
    """Bounds added to the schema for decoding only, so that generation always ends.

    Attributes:
        text_chars: Longest free-text string (title, descriptions, dialogue). The Screenplay
            allows up to 4000; a useful shot description is far shorter.
        id_chars: Longest id (the Screenplay allows 64).
        items: Most entries in any list other than `scenes` and `shots` (cast, aliases,
            blocking, dialogue), and in `scenes` / `shots` when the brief gives no count.
    """

    text_chars: int = 1000
    id_chars: int = 32
    items: int = 64

    def __post_init__(self) -> None:
        for name in ("text_chars", "id_chars", "items"):
            if getattr(self, name) < 1:
                raise InputError(f"decoding bound {name} must be at least 1")


def decoding_schema(
    schema: dict, brief: Brief | None = None, bounds: DecodingBounds | None = None
) -> dict:
    """A copy of `schema` with the decoding bounds; every answer it allows, `schema` allows.

    Args:
        schema: A JSON schema, usually `Screenplay.model_json_schema()`.
        brief: The brief being written; its scene and shot counts bound `scenes` and `shots`.
        bounds: String and list limits; `DecodingBounds()` if None.

    Returns:
        The tightened schema (the argument is not changed).
    """
    bounds = bounds or DecodingBounds()
    bounded = copy.deepcopy(schema)
    _bound_subschemas(bounded, bounds)

    scenes = bounded.get("properties", {}).get("scenes")
    shots = bounded.get("$defs", {}).get("Scene", {}).get("properties", {}).get("shots")
    if scenes is None or shots is None:  # not the Screenplay schema
        return bounded
    fewest_scenes, most_scenes, most_shots = 1, bounds.items, bounds.items
    if brief is not None and brief.scenes:
        fewest_scenes = most_scenes = brief.scenes
    elif brief is not None and brief.shots:
        most_scenes = brief.shots  # every scene needs a shot
    if brief is not None and brief.shots:
        most_shots = brief.shots - fewest_scenes + 1  # the other scenes need a shot each
    scenes.update(minItems=fewest_scenes, maxItems=most_scenes)
    shots.update(minItems=1, maxItems=most_shots)
    return bounded


def _bound_subschemas(node: Any, bounds: DecodingBounds) -> None:
    """Add length and item limits to every string and array subschema, in place."""
    if not isinstance(node, dict):
        return
    if node.get("type") == "string" and not {"enum", "const", "format"} & node.keys():
        if node.get("pattern") == ID_PATTERN:
            # xgrammar ignores maxLength beside a pattern: the bound goes in the pattern
            node["pattern"] = f"^[a-z0-9][a-z0-9_-]{{0,{bounds.id_chars - 1}}}$"
        elif "pattern" not in node:
            longest = min(node.get("maxLength", bounds.text_chars), bounds.text_chars)
            node["maxLength"] = max(longest, node.get("minLength", 0))
    if node.get("type") == "array":
        node["maxItems"] = min(node.get("maxItems", bounds.items), bounds.items)
    for key in ("properties", "$defs", "definitions"):
        for child in node.get(key, {}).values():
            _bound_subschemas(child, bounds)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for child in node.get(key, []):
            _bound_subschemas(child, bounds)
    for key in ("items", "additionalProperties"):
        _bound_subschemas(node.get(key), bounds)


class TransformersWriter(LLMWriter):
    """Writes screenplays with a local causal language model under a JSON-schema grammar.

    Args:
        model_dir: A directory written by `save_pretrained` (config, safetensors weights,
            tokenizer). The tokenizer's chat template is used when it has one.
        max_new_tokens: Most tokens one answer may have.
        temperature: Sampling temperature; 0 decodes greedily.
        top_p: Nucleus sampling mass.
        max_attempts: Answers the repair loop asks for before it gives up.
        bounds: Decoding bounds (see `decoding_schema`).
        trust_remote_code: Run Python code shipped with the model. Only for models you trust.
        device: Torch device; "cuda" when available, else "cpu", if None.

    Raises:
        InputError: The directory is missing or holds no loadable model.
    """

    name = "transformers"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        max_new_tokens: int = 8192,
        temperature: float = 0.7,
        top_p: float = 0.95,
        max_attempts: int = 3,
        bounds: DecodingBounds | None = None,
        trust_remote_code: bool = False,
        device: str | None = None,
    ) -> None:
        super().__init__(max_attempts)
        if max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if temperature < 0:
            raise InputError(f"temperature must be 0 or more, got {temperature}")
        if not 0 < top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], got {top_p}")
        self.model_dir = Path(model_dir).expanduser()
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.bounds = bounds or DecodingBounds()
        self._load(trust_remote_code, device)

    # -- loading ----------------------------------------------------------------------

    def _load(self, trust_remote_code: bool, device: str | None) -> None:
        # 1. check the directory
        where = self.model_dir
        if not where.exists():
            raise InputError(f"model directory {where} does not exist")
        if not where.is_dir():
            raise InputError(f"model directory {where} is not a directory")
        if not (where / "config.json").is_file():
            raise InputError(f"{where} is not a transformers model directory: no config.json")

        # 2. tokenizer and weights (safetensors only: pickled weights can run code)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                where, trust_remote_code=trust_remote_code
            )
            self.model = AutoModelForCausalLM.from_pretrained(
                where, use_safetensors=True, trust_remote_code=trust_remote_code
            )
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot load the model in {where}: {_one_line(exc)}") from None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()

        # 3. the stop tokens and the grammar compiler
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.stop_token_ids: list[int] = [eos] if isinstance(eos, int) else list(eos or [])
        if not self.stop_token_ids:
            raise InputError(f"the model in {where} has no end-of-sequence token")
        vocab_size = self.model.get_output_embeddings().weight.shape[0]
        self.tokenizer_info = xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=vocab_size, stop_token_ids=self.stop_token_ids
        )
        self.grammar_compiler = xgr.GrammarCompiler(self.tokenizer_info)
        self._control_char_tokens = torch.tensor(
            [
                token_id
                for token_id, piece in enumerate(self.tokenizer_info.decoded_vocab)
                if token_id not in self.stop_token_ids and any(byte < 0x20 for byte in piece)
            ],
            dtype=torch.long,
            device=self.device,
        )

    # -- writing ----------------------------------------------------------------------

    def complete(
        self, messages: list[dict[str, str]], schema: dict, seed: int, brief: Brief
    ) -> str:
        """The model's answer, decoded under the schema bounded by the brief's counts."""
        return self.generate(messages, decoding_schema(schema, brief, self.bounds), seed)

    def generate(
        self,
        messages: list[dict[str, str]],
        schema: dict | None,
        seed: int,
        max_new_tokens: int | None = None,
    ) -> str:
        """The model's answer to `messages`, constrained to `schema` (free text if None).

        Args:
            messages: Chat messages (`role`, `content`).
            schema: JSON schema the answer must follow, used as is; None for no grammar.
            seed: Sampling seed: the same seed, messages and schema give the same answer.
            max_new_tokens: Overrides the writer's `max_new_tokens`.

        Returns:
            The answer's text, without the stop token.

        Raises:
            WriterError: The prompt leaves no room for an answer in the model's context.
        """
        # 1. prompt -> input ids
        input_ids = self._encode(messages)  # (1, T)
        budget = self._token_budget(input_ids.shape[1], max_new_tokens or self.max_new_tokens)

        # 2. grammar and control-character mask
        processors: list[Any] = []
        if schema is not None:
            grammar = self.grammar_compiler.compile_json_schema(
                json.dumps(schema), any_whitespace=False
            )
            processors = [xgr.contrib.hf.LogitsProcessor(grammar), self._mask_control_chars]

        # 3. seeded sampling, without touching the global random state
        sampling = (
            {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p, "top_k": 0}
            if self.temperature > 0
            else {"do_sample": False}
        )
        devices = []
        if self.device.type == "cuda":
            index = self.device.index
            devices = [index if index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            torch.manual_seed(seed)
            output_ids = self.model.generate(
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=budget,
                logits_processor=processors,
                eos_token_id=self.stop_token_ids,
                pad_token_id=self.tokenizer.pad_token_id or self.stop_token_ids[0],
                **sampling,
            )  # (1, T + N)

        # 4. decode the new tokens, up to the stop token
        answer_ids = output_ids[0, input_ids.shape[1] :].tolist()
        stopped = bool(answer_ids) and answer_ids[-1] in self.stop_token_ids
        if stopped:
            answer_ids = answer_ids[:-1]
        elif len(answer_ids) >= budget:
            logger.warning(
                "the %s writer's answer stopped at %d new tokens, before it was complete",
                self.name,
                budget,
            )
        return self.tokenizer.decode(
            answer_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
        )

    def _encode(self, messages: list[dict[str, str]]) -> torch.Tensor:
        """Chat template if the tokenizer has one, else 'role: content' paragraphs."""
        if getattr(self.tokenizer, "chat_template", None):
            prompt = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            encoded = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
        else:
            prompt = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages)
            encoded = self.tokenizer(prompt + "assistant: ", return_tensors="pt")
        return encoded["input_ids"].to(self.device)

    def _token_budget(self, prompt_tokens: int, wanted: int) -> int:
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context is None:
            return wanted
        if prompt_tokens >= context:
            raise WriterError(
                f"the prompt is {prompt_tokens} tokens, more than the context of the model "
                f"in {self.model_dir} ({context} tokens)"
            )
        return min(wanted, context - prompt_tokens)

    def _mask_control_chars(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Logits processor: forbid tokens with raw control characters (xgrammar#800)."""
        scores[:, self._control_char_tokens] = float("-inf")
        return scores


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
