"""The language-model writers against real models and real HTTP servers.

Models are tiny Llamas built in code (`llm_fixtures`): a random one, whose answers mean
nothing, and a "terse" one, whose hand-set weights make a grammar-constrained answer the
shortest valid screenplay. Servers run on 127.0.0.1: `transformers serve` and the small
constrained server of `llm_fixtures` as subprocesses, scripted servers in a thread.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest

from reelsmith.errors import InputError, WriterError
from reelsmith.planner.brief import Brief
from reelsmith.planner.writers.openai_server import OpenAIWriter
from reelsmith.schema.screenplay import Screenplay
from reelsmith.tests.llm_fixtures import (
    ChatServer,
    Hang,
    Script,
    build_tokenizer,
    free_port,
    offline_env,
    save_tiny_model,
    server_process,
)

SERVER_START_TIMEOUT = 120.0
ONE_SHOT = Brief("A fox meets a robot on a beach.", scenes=1, shots=1, seed=7)

VALID = json.dumps(
    {
        "title": "Beach",
        "characters": [{"id": "fox", "name": "Fox"}, {"id": "robot", "name": "Robot"}],
        "scenes": [
            {
                "id": "s1",
                "location": "beach",
                "shots": [{"id": "s1-1", "characters": ["fox", "robot"], "action": "they meet"}],
            }
        ],
    }
)
UNKNOWN_ID = VALID.replace('"characters": ["fox", "robot"]', '"characters": ["fox", "bob"]')
NOT_JSON = "Sure! Here is your screenplay: {title: Beach"


@dataclass(frozen=True)
class TinyModels:
    random: Path
    terse: Path


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and lose much when other jobs share the CPUs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    root = tmp_path_factory.mktemp("tiny-models")
    tokenizer = build_tokenizer()
    return TinyModels(
        random=save_tiny_model(root / "random", tokenizer, "random"),
        terse=save_tiny_model(root / "terse", tokenizer, "terse"),
    )


@pytest.fixture(scope="session")
def transformers_serve(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory):
    """`transformers serve` over the random model; yields its base URL."""
    work = tmp_path_factory.mktemp("transformers-serve")
    port = free_port()
    command = [
        sys.executable, "-m", "transformers.cli.transformers", "serve", str(tiny_models.random),
        "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
    ]  # fmt: skip
    with server_process(
        command,
        ready_url=f"http://127.0.0.1:{port}/health",
        log_path=work / "server.log",
        env=offline_env(work / "hf-home"),
        timeout=SERVER_START_TIMEOUT,
    ):
        yield f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def constrained_server(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory):
    """The test server of `llm_fixtures` over the terse model; yields (base URL, request log)."""
    work = tmp_path_factory.mktemp("constrained-server")
    port, log = free_port(), work / "requests.jsonl"
    command = [
        sys.executable, "-m", "reelsmith.tests.llm_fixtures",
        "--model", str(tiny_models.terse), "--port", str(port), "--log", str(log),
    ]  # fmt: skip
    with server_process(
        command,
        ready_url=f"http://127.0.0.1:{port}/v1/models",
        log_path=work / "server.log",
        env=offline_env(work / "hf-home"),
        timeout=SERVER_START_TIMEOUT,
    ):
        yield f"http://127.0.0.1:{port}/v1", log


def _requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _schema_valid(text: str) -> None:
    jsonschema.validate(json.loads(text), Screenplay.model_json_schema())


# -- the openai writer: constrained success --------------------------------------------


def test_openai_writer_constrained_path_end_to_end(constrained_server):
    base_url, log = constrained_server
    writer = OpenAIWriter(base_url, model=None, timeout=60, max_retries=0)

    screenplay = writer.write(ONE_SHOT)

    assert screenplay.num_shots == 1
    assert writer.model == "terse"  # asked /v1/models
    assert writer.use_response_format and len(writer.attempts) == 1
    request = _requests(log)[-1]
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"] == Screenplay.model_json_schema()
    assert request["seed"] == ONE_SHOT.seed


# -- the openai writer against transformers serve -------------------------------------


def test_openai_writer_falls_back_when_transformers_serve_ignores_response_format(
    transformers_serve, tiny_models, caplog
):
    writer = OpenAIWriter(
        transformers_serve, model=str(tiny_models.random), max_attempts=2, max_tokens=16
    )

    with caplog.at_level(logging.WARNING), pytest.raises(WriterError) as caught:
        writer.write(ONE_SHOT)

    message = str(caught.value)
    assert "gave no valid screenplay in 2 attempt(s)" in message
    assert "not valid JSON" in message and "\n" not in message
    assert len(writer.attempts) == 2
    assert writer.use_response_format is False
    assert "ignores response_format" in caplog.text and transformers_serve in caplog.text


def test_openai_writer_says_when_the_server_lists_no_model():
    # (`transformers serve MODEL` listed no model before transformers 5.2x; it lists MODEL now)
    with ChatServer(Script([VALID]), model_name=None).running() as server:
        writer = OpenAIWriter(server.base_url, model=None, max_retries=0)
        with pytest.raises(WriterError, match="lists no models; pass the model name"):
            writer.write(ONE_SHOT)
        assert server.received == []  # nothing was asked of a model it cannot name


# -- the openai writer against scripted servers ---------------------------------------


def test_repair_loop_sends_the_validation_errors_back():
    with ChatServer(Script([NOT_JSON, UNKNOWN_ID, VALID])).running() as server:
        writer = OpenAIWriter(server.base_url, model="m", max_retries=0)
        screenplay = writer.write(ONE_SHOT)

    assert screenplay.character("robot").name == "Robot"
    assert [bool(a.errors) for a in writer.attempts] == [True, True, False]
    first, second, third = server.received
    assert second["messages"][:-2] == first["messages"]
    assert second["messages"][-2] == {"role": "assistant", "content": NOT_JSON}
    assert "not valid JSON" in second["messages"][-1]["content"]
    assert third["messages"][-2] == {"role": "assistant", "content": UNKNOWN_ID}
    assert "unknown character id 'bob'" in third["messages"][-1]["content"]
    assert [r["seed"] for r in server.received] == [7, 8, 9]


def test_openai_writer_falls_back_when_the_server_refuses_response_format(caplog):
    server = ChatServer(Script([VALID, VALID]), reject_response_format=True)
    with server.running(), caplog.at_level(logging.WARNING):
        writer = OpenAIWriter(server.base_url, model="m", max_retries=0)
        writer.write(ONE_SHOT)
        writer.write(ONE_SHOT)

    refused, retried, later = server.received
    assert "response_format" in refused
    assert "response_format" not in retried and "response_format" not in later
    assert writer.use_response_format is False
    assert caplog.text.count("refuses response_format") == 1


def test_openai_writer_gives_up_after_max_attempts():
    with ChatServer(Script([UNKNOWN_ID] * 3)).running() as server:
        writer = OpenAIWriter(server.base_url, model="m", max_attempts=3, max_retries=0)
        with pytest.raises(WriterError, match=r"3 attempt\(s\).*unknown character id 'bob'"):
            writer.write(ONE_SHOT)
    assert len(server.received) == 3


# -- the openai writer: failures a user can cause --------------------------------------


def test_unreachable_server_is_one_clear_error():
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    writer = OpenAIWriter(url, model="m", max_retries=0)

    started = time.monotonic()
    with pytest.raises(WriterError) as caught:
        writer.write(ONE_SHOT)

    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert message.startswith(f"cannot reach the server at {url}: ")
    assert "refused" in message.lower() and "\n" not in message


def test_hanging_server_times_out():
    hang = Hang()
    server = ChatServer(hang)
    with server.running():
        writer = OpenAIWriter(server.base_url, model="m", timeout=0.5, max_retries=1)
        started = time.monotonic()
        try:
            with pytest.raises(WriterError) as caught:
                writer.write(ONE_SHOT)
        finally:
            hang.release()

    assert time.monotonic() - started < 10
    assert str(caught.value) == (
        f"the server at {server.base_url} did not answer within 0.5 s (2 tries)"
    )


def test_refused_api_key_is_never_shown(caplog):
    secret = "sk-test-0123456789abcdef"
    with ChatServer(Script([VALID]), api_key="sk-right").running() as server:
        writer = OpenAIWriter(server.base_url, api_key=secret, model="m", max_retries=0)
        with caplog.at_level(logging.DEBUG), pytest.raises(WriterError) as caught:
            writer.write(ONE_SHOT)

    message = str(caught.value)
    assert f"the server at {server.base_url} refused the API key (HTTP 401)" in message
    assert secret not in message and "<api key>" in message  # the server echoed it
    assert secret not in repr(writer) and secret not in caplog.text


@pytest.mark.parametrize("url", ["localhost:8000/v1", "ftp://host/v1", "", "http://"])
def test_bad_base_url_is_an_input_error(url):
    with pytest.raises(InputError, match="is not an http\\(s\\) URL"):
        OpenAIWriter(url)


def test_credentials_in_the_url_are_not_shown():
    url = f"http://admin:hunter2@127.0.0.1:{free_port()}/v1"
    writer = OpenAIWriter(url, model="m", max_retries=0)
    with pytest.raises(WriterError) as caught:
        writer.write(ONE_SHOT)
    assert "hunter2" not in str(caught.value) and "hunter2" not in repr(writer)
    assert str(caught.value).startswith("cannot reach the server at http://127.0.0.1:")


# -- the transformers writer -----------------------------------------------------------


def test_transformers_writer_random_model_answers_follow_the_schema(tiny_models):
    from reelsmith.planner.writers.transformers_local import (
        DecodingBounds,
        TransformersWriter,
        decoding_schema,
    )

    writer = TransformersWriter(
        tiny_models.random,
        max_attempts=2,
        max_new_tokens=2000,
        bounds=DecodingBounds(text_chars=12, id_chars=8, items=3),
    )

    def answers(seed: int) -> list[str]:
        try:
            writer.write(Brief(ONE_SHOT.prompt, scenes=1, shots=1, seed=seed))
        except WriterError as exc:  # meaningless text: unknown ids and the like
            assert "gave no valid screenplay in 2 attempt(s)" in str(exc)
        return [attempt.text for attempt in writer.attempts]

    first = answers(seed=3)
    for text in first:
        _schema_valid(text)
    assert answers(seed=3) == first  # same seed, same text
    assert answers(seed=4)[0] != first[0]

    writer.tokenizer.chat_template = None  # a plain 'role: content' prompt instead
    schema = decoding_schema(Screenplay.model_json_schema(), ONE_SHOT, writer.bounds)
    _schema_valid(writer.generate([{"role": "user", "content": "A movie."}], schema, seed=0))


def test_transformers_writer_terse_model_writes_a_screenplay(tiny_models):
    from reelsmith.planner.writers.transformers_local import TransformersWriter

    writer = TransformersWriter(tiny_models.terse)
    screenplay = writer.write(Brief("Two robots race.", scenes=2, shots=3))

    assert len(screenplay.scenes) == 2  # the brief's count, enforced by the grammar
    _schema_valid(writer.attempts[0].text)


def test_transformers_writer_model_dir_errors(tmp_path, tiny_models):
    from reelsmith.planner.writers.transformers_local import TransformersWriter

    with pytest.raises(InputError, match="does not exist"):
        TransformersWriter(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no config.json"):
        TransformersWriter(tmp_path)
    for file in tiny_models.random.iterdir():  # all but the weights
        if file.suffix != ".safetensors":
            (tmp_path / file.name).write_bytes(file.read_bytes())
    with pytest.raises(InputError) as caught:
        TransformersWriter(tmp_path)
    assert str(caught.value).startswith(f"cannot load the model in {tmp_path}: ")
    assert "model.safetensors" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_decoding_schema_only_narrows_the_screenplay_schema():
    from reelsmith.planner.writers.transformers_local import DecodingBounds, decoding_schema

    schema = Screenplay.model_json_schema()
    bounded = decoding_schema(schema, Brief("x", scenes=2, shots=5), DecodingBounds(text_chars=50))

    assert schema == Screenplay.model_json_schema()  # not changed in place
    scenes, defs = bounded["properties"]["scenes"], bounded["$defs"]
    assert (scenes["minItems"], scenes["maxItems"]) == (2, 2)
    shots = defs["Scene"]["properties"]["shots"]
    assert (shots["minItems"], shots["maxItems"]) == (1, 4)  # 5 shots, another scene needs 1
    assert bounded["properties"]["title"]["maxLength"] == 50
    assert defs["Character"]["properties"]["id"]["pattern"] == "^[a-z0-9][a-z0-9_-]{0,31}$"
    assert defs["ShotSize"] == schema["$defs"]["ShotSize"]  # enums untouched
    two_scenes = json.loads(VALID)
    two_scenes["scenes"].append({**two_scenes["scenes"][0], "id": "s2"})
    jsonschema.validate(two_scenes, bounded)
    jsonschema.validate(two_scenes, schema)


# -- the vllm writer -------------------------------------------------------------------


def test_vllm_writer_without_vllm_is_one_clear_error(monkeypatch):
    from reelsmith.planner.writers.vllm_local import VLLMWriter

    monkeypatch.setitem(sys.modules, "vllm", None)  # as if it were not installed
    with pytest.raises(WriterError) as caught:
        VLLMWriter("any-model")
    assert str(caught.value) == "the vllm writer needs vllm: pip install 'reelsmith[vllm]'"


@pytest.mark.slow
@pytest.mark.gpu
def test_vllm_writer_terse_model_writes_a_screenplay(tiny_models):
    pytest.importorskip("vllm")
    from reelsmith.planner.writers.vllm_local import VLLMWriter

    writer = VLLMWriter(
        str(tiny_models.terse),
        engine_args={"max_model_len": 8192, "gpu_memory_utilization": 0.2, "enforce_eager": True},
    )
    screenplay = writer.write(ONE_SHOT)
    assert screenplay.num_shots == 1
    _schema_valid(writer.attempts[0].text)
