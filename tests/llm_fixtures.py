"""Tiny language models and real HTTP servers for the tests of the language-model writers.

- `build_tokenizer`: a byte-level BPE trained in code on reelsmith's own prompts, with a
  ChatML chat template.
- `save_tiny_model`: a 2-layer, 32-wide Llama saved with `save_pretrained`, either
  "random" (random weights: meaningless text) or "terse" (weights set by hand so that
  every position prefers the same tokens, '"' > '}' > '{' > ']' > ','; under a JSON-schema
  grammar it writes a shortest answer: one-character strings, one scene of one shot, and
  no shot lists a character, so the screenplay is valid).
- `ChatServer`: a small OpenAI-compatible server (stdlib `http.server`) that answers from a
  backend: a script of canned answers, or a local model that honours `response_format`
  json_schema with the transformers writer's grammar-constrained generation. It records
  every request it receives.
- `server_process`: runs a server (`transformers serve`, or this module) as a subprocess on
  127.0.0.1, waits until it answers, and always stops it.

`python -m reelsmith.tests.llm_fixtures --model DIR --port N` serves DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from reelsmith.planner import prompts
from reelsmith.planner.brief import Brief
from reelsmith.schema.screenplay import Screenplay

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# The terse model's preference, highest first: stop, close a string, close an object, open
# one object, close an array, go on. Any other token scores 0.
TERSE_PREFERENCE = {"<|im_end|>": 7.0, '"': 6.0, "}": 5.0, "{": 4.0, "]": 3.0, ",": 2.0}

# -- tiny models ------------------------------------------------------------------------


def build_tokenizer(vocab_size: int = 512):
    """A byte-level BPE trained on reelsmith's prompts, with a ChatML chat template.

    JSON punctuation is split off before BPE merges, so each of `{ } [ ] " ,` is a token
    of its own (the terse model relies on that).
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    schema = Screenplay.model_json_schema()
    corpus = [m["content"] for m in prompts.write_messages(Brief("a fox meets a robot"), schema)]
    corpus.append(prompts.repair_message(["scenes[0].shots[0].characters[0]: unknown id"]))

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"[^\w\s]"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def save_tiny_model(directory: Path, tokenizer, kind: Literal["random", "terse"]) -> Path:
    """Save a tiny Llama and `tokenizer` to `directory` (safetensors); return the directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=16384,  # the prompt carries the whole schema: ~3.5k tokens
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    if kind == "terse":
        _make_terse(model, tokenizer)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _make_terse(model, tokenizer) -> None:
    """Turn the model into a constant next-token preference (`TERSE_PREFERENCE`).

    With the attention and MLP output projections at zero, the residual stream is the token
    embedding; with every embedding equal to the unit vector e0, the final norm gives
    sqrt(d) * e0 at every position, so the logits are sqrt(d) * lm_head[:, 0].
    """
    import torch

    preference = torch.zeros(len(tokenizer))
    for token, score in TERSE_PREFERENCE.items():
        preference[tokenizer.convert_tokens_to_ids(token)] = score
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 1.0
        model.lm_head.weight.zero_()
        model.lm_head.weight[:, 0] = 10.0 * preference  # gaps of ~57 logits: no sampling noise


# -- an OpenAI-compatible server ---------------------------------------------------------

Backend = Callable[[dict], tuple[str, str]]
"""Answers one chat-completion request body with (text, finish_reason)."""


class Script:
    """A backend that gives canned answers in order."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)

    def __call__(self, body: dict) -> tuple[str, str]:
        if not self.answers:
            raise RuntimeError("the script has no more answers")
        return self.answers.pop(0), "stop"


class Hang:
    """A backend that never answers (until `release`), to test client timeouts."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def __call__(self, body: dict) -> tuple[str, str]:
        self.released.wait(60)
        return "", "stop"

    def release(self) -> None:
        self.released.set()


class ModelBackend:
    """A local model; honours `response_format` json_schema with constrained decoding."""

    def __init__(self, model_dir: str | Path) -> None:
        from reelsmith.planner.writers.transformers_local import TransformersWriter

        self.writer = TransformersWriter(model_dir, device="cpu")

    def __call__(self, body: dict) -> tuple[str, str]:
        from reelsmith.planner.writers.transformers_local import decoding_schema

        response_format = body.get("response_format") or {}
        schema = None
        if response_format.get("type") == "json_schema":
            schema = decoding_schema(response_format["json_schema"]["schema"])
        text = self.writer.generate(
            body["messages"],
            schema,
            seed=body.get("seed") or 0,
            max_new_tokens=body.get("max_tokens"),
        )
        return text, "stop"


class ChatServer(ThreadingHTTPServer):
    """`/v1/models` and `/v1/chat/completions` on 127.0.0.1, answered by a backend.

    Args:
        backend: Answers each chat-completion request.
        model_name: The one model `/v1/models` lists (None: it lists none).
        api_key: If set, requests need `Authorization: Bearer <api_key>`; a wrong key is
            echoed back in the 401 body, as some servers do.
        reject_response_format: Answer 400 to any request with `response_format`, as servers
            without structured outputs do.
        log_path: Also append each request body to this JSON-lines file.
        port: 0 picks a free port.
    """

    daemon_threads = True

    def __init__(
        self,
        backend: Backend,
        *,
        model_name: str | None = "tiny-screenwriter",
        api_key: str | None = None,
        reject_response_format: bool = False,
        log_path: Path | None = None,
        port: int = 0,
    ) -> None:
        super().__init__(("127.0.0.1", port), _ChatHandler)
        self.backend = backend
        self.model_name = model_name
        self.api_key = api_key
        self.reject_response_format = reject_response_format
        self.log_path = log_path
        self.received: list[dict] = []
        self._lock = threading.Lock()
        self._answer_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def record(self, body: dict) -> None:
        """Remember a request body (and log it)."""
        with self._lock:
            self.received.append(body)
            if self.log_path is not None:
                with self.log_path.open("a") as log:
                    log.write(json.dumps(body) + "\n")

    def answer(self, body: dict) -> tuple[str, str]:
        with self._answer_lock:  # one answer at a time: model backends are not thread-safe
            return self.backend(body)

    @contextmanager
    def running(self) -> Iterator[ChatServer]:
        """Serve from a background thread for the duration of the block."""
        thread = threading.Thread(target=self.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.shutdown()
            self.server_close()


class _ChatHandler(BaseHTTPRequestHandler):
    server: ChatServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        name = self.server.model_name
        model = {"id": name, "object": "model", "created": 0, "owned_by": "test"}
        self._send(200, {"object": "list", "data": [model] if name is not None else []})

    def do_POST(self) -> None:
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        presented = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if self.server.api_key is not None and presented != self.server.api_key:
            message = f"Incorrect API key provided: {presented}"
            return self._send(401, {"error": {"message": message, "type": "invalid_api_key"}})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.record(body)
        if self.server.reject_response_format and "response_format" in body:
            message = "response_format is not supported by this server"
            return self._send(400, {"error": {"message": message, "type": "invalid_request"}})
        try:
            text, finish_reason = self.server.answer(body)
        except Exception as exc:  # report it as a server error, as real servers do
            return self._send(500, {"error": {"message": f"{type(exc).__name__}: {exc}"}})
        self._send(200, _completion(body.get("model", ""), text, finish_reason))

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout tests)
            pass


def _completion(model: str, text: str, finish_reason: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason,
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


# -- server processes --------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def offline_env(hf_home: Path) -> dict[str, str]:
    """The environment of a server subprocess: no network, Hugging Face state in `hf_home`."""
    env = dict(os.environ)
    env.update(
        HF_HOME=str(hf_home),
        HF_HUB_CACHE=str(hf_home / "hub"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_UPDATE_CHECK="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS="1",
        PYTHONUNBUFFERED="1",
    )
    (hf_home / "hub").mkdir(parents=True, exist_ok=True)
    return env


@contextmanager
def server_process(
    command: list[str], *, ready_url: str, log_path: Path, env: dict[str, str], timeout: float
) -> Iterator[subprocess.Popen]:
    """Run `command`, wait until `ready_url` answers 200 (at most `timeout` s), then yield.

    The process is terminated (killed if it lingers) when the block ends, whatever happens.
    Its output goes to `log_path`, whose tail is shown if it fails to start.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{command[:4]} exited with {process.returncode}: {_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"{command[:4]} not ready in {timeout} s: {_tail(log_path)}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                time.sleep(0.2)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a local model, OpenAI-style.")
    parser.add_argument("--model", required=True, help="model directory")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--log", type=Path, help="append each request to this JSON-lines file")
    parser.add_argument("--reject-response-format", action="store_true")
    parser.add_argument("--api-key")
    args = parser.parse_args(argv)
    server = ChatServer(
        ModelBackend(args.model),
        model_name=Path(args.model).name,
        api_key=args.api_key,
        reject_response_format=args.reject_response_format,
        log_path=args.log,
        port=args.port,
    )
    print(f"serving {args.model} at {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
