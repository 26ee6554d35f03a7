"""The `reelsmith` command run as a real subprocess: outputs, formats and bad input."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reelsmith.schema.screenplay import Screenplay


def run(
    *args: str, cwd: Path | None = None, timeout: float = 60, env: dict | None = None
) -> subprocess.CompletedProcess:
    """The real CLI as a subprocess; `env` adds to (not replaces) the environment."""
    return subprocess.run(
        [sys.executable, "-m", "reelsmith", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def assert_clean_failure(
    result: subprocess.CompletedProcess, *needles: str, warnings: bool = False
) -> None:
    """Exit code 2, one line on stderr naming the problem, no traceback.

    With `warnings`, lines starting 'reelsmith: warning:' may come before it.
    """
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    if warnings:
        lines = [line for line in lines if not line.startswith("reelsmith: warning: ")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("reelsmith: error: ")
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert result.stdout == ""


def test_script_prints_valid_json_and_is_deterministic():
    first = run("script", "Mira and Bo cross the snowfield", "--seed", "7", "--shots", "6")
    assert first.returncode == 0, first.stderr
    screenplay = Screenplay.from_json(first.stdout)
    assert screenplay.num_shots == 6
    assert (
        run("script", "Mira and Bo cross the snowfield", "--seed", "7", "--shots", "6").stdout
        == first.stdout
    )
    assert "6 shots" in first.stderr


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("movie.json", "json"),
        ("movie.yaml", "yaml"),
        ("movie.fountain", "fountain"),
        ("shots.csv", "csv"),
    ],
)
def test_output_format_follows_extension_and_imports_back(tmp_path, name, fmt):
    out = tmp_path / name
    result = run("script", "a red fox in the forest", "--seed", "2", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stderr
    again = run("script", "--from", str(out), "--format", "json")
    assert again.returncode == 0, again.stderr
    imported = Screenplay.from_json(again.stdout)
    assert [c.name for c in imported.characters] == ["Red Fox"]
    if fmt in ("json", "yaml"):
        original = run("script", "a red fox in the forest", "--seed", "2").stdout
        assert again.stdout == original


def test_schema_command(tmp_path):
    result = run("schema")
    assert result.returncode == 0
    assert json.loads(result.stdout) == Screenplay.model_json_schema()


# -- bad input: one line, exit code 2, nothing written -------------------------------


@pytest.mark.parametrize("prompt", ["", "   ", "\t\n"])
def test_empty_prompt(tmp_path, prompt):
    out = tmp_path / "s.json"
    assert_clean_failure(run("script", prompt, "-o", str(out)), "prompt is empty")
    assert not out.exists()


def test_missing_file(tmp_path):
    assert_clean_failure(run("script", "--from", str(tmp_path / "nope.fountain")), "no such file")


def test_a_prompt_naming_a_screenplay_file_reads_that_file(tmp_path):
    source = Path(__file__).parent / "data" / "shotlists" / "harbour.yaml"
    given = run("script", str(source), "--format", "json")
    assert given.returncode == 0, given.stderr
    assert f"as --from {source}" in given.stderr
    assert given.stdout == run("script", "--from", str(source), "--format", "json").stdout
    assert Screenplay.from_json(given.stdout).title == "The Harbour"
    made = run("make", str(source), "-o", str(tmp_path / "run"), "--approve")
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "run" / "source.yaml").read_bytes() == source.read_bytes()
    folder = tmp_path / "dir.fountain"
    folder.mkdir()
    assert_clean_failure(run("script", str(folder)), "is a folder")


@pytest.mark.parametrize("command", ["script", "make"])
def test_a_prompt_that_names_a_missing_screenplay_file_fails_cleanly(tmp_path, command):
    out = tmp_path / "run"
    result = run(command, "episode-2.fountain", "-o", str(out), cwd=tmp_path)
    assert_clean_failure(result, "episode-2.fountain: no such file", "--from FILE")
    assert not out.exists()
    # words around a file name are an idea like any other
    idea = run("script", "a fox reads story.json aloud", "--shots", "2", cwd=tmp_path)
    assert idea.returncode == 0, idea.stderr
    assert Screenplay.from_json(idea.stdout).num_shots == 2


def test_unreadable_file(tmp_path):
    folder = tmp_path / "dir.json"
    folder.mkdir()
    assert_clean_failure(run("script", "--from", str(folder)), "is a folder")


def test_unknown_extension(tmp_path):
    path = tmp_path / "script.docx"
    path.write_text("hello")
    assert_clean_failure(run("script", "--from", str(path)), "unknown extension .docx")


def test_binary_fountain(tmp_path):
    path = tmp_path / "bad.fountain"
    path.write_bytes(bytes(range(256)) * 4)
    assert_clean_failure(run("script", "--from", str(path)), "bad.fountain", "binary")


def test_csv_missing_required_column(tmp_path):
    path = tmp_path / "shots.csv"
    path.write_text("scene,duration\nintro,3\n")
    assert_clean_failure(run("script", "--from", str(path)), "shots.csv", "missing required")


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("title: [unclosed\nscenes: {\n")
    assert_clean_failure(run("script", "--from", str(path)), "bad.yaml", "not valid YAML")


def test_screenplay_violating_schema_names_the_field(tmp_path):
    data = json.loads(run("script", "Ada and Kit", "--shots", "2").stdout)
    data["scenes"][0]["shots"][0]["characters"] = ["nobody"]
    data["scenes"][0]["shots"][0]["blocking"] = []
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    assert_clean_failure(
        run("script", "--from", str(path)),
        "scenes[0].shots[0].characters[0]: unknown character id 'nobody'",
    )


def test_unknown_writer():
    assert_clean_failure(run("script", "a fox", "--writer", "gpt9"), "unknown writer 'gpt9'")


def test_unknown_option_and_bad_number():
    assert_clean_failure(run("script", "a fox", "--bogus"), "--bogus")
    assert_clean_failure(run("script", "a fox", "--shots", "many"), "--shots")


def test_unreachable_server_is_clear_and_fast():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = run(
        "script",
        "a fox",
        "--writer",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--model",
        "m",
        "--timeout",
        "5",
        timeout=60,
    )
    assert_clean_failure(result, f"127.0.0.1:{port}")


def test_failure_keeps_an_existing_output_untouched(tmp_path):
    out = tmp_path / "keep.json"
    out.write_text("precious")
    assert_clean_failure(run("script", "  ", "-o", str(out)))
    bad = tmp_path / "bad.yaml"
    bad.write_text("scenes: 3\n")
    assert run("script", "--from", str(bad), "-o", str(out)).returncode == 2
    assert out.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "keep.json"]


def test_model_that_never_writes_a_valid_screenplay(tmp_path):
    from reelsmith.tests.llm_fixtures import ChatServer, Script

    out = tmp_path / "s.json"
    with ChatServer(Script(["not json at all"] * 2)).running() as server:
        result = run(
            "script",
            "a fox",
            "--writer",
            "openai",
            "--base-url",
            server.base_url,
            "--model",
            "tiny",
            "--attempts",
            "2",
            "-o",
            str(out),
        )
    assert_clean_failure(
        result, "no valid screenplay in 2 attempt(s)", "not valid JSON", warnings=True
    )
    assert not out.exists()


def test_openai_writer_through_the_cli_keeps_the_key_secret(tmp_path):
    from reelsmith.tests.llm_fixtures import ChatServer, Script

    valid = run("script", "Ada and Kit", "--shots", "2").stdout
    out = tmp_path / "s.yaml"
    secret = "sk-very-secret-123"
    env_run = run(
        "script",
        "Ada and Kit",
        "--writer",
        "openai",
        "--model",
        "tiny",
        "-o",
        str(out),
        env={"OPENAI_API_KEY": secret, "OPENAI_BASE_URL": "http://127.0.0.1:1/v1"},
    )
    assert env_run.returncode == 2 and secret not in env_run.stderr
    with ChatServer(Script([valid]), api_key=secret).running() as server:
        result = run(
            "script",
            "Ada and Kit",
            "--writer",
            "openai",
            "--base-url",
            server.base_url,
            "--model",
            "tiny",
            "-o",
            str(out),
            env={"OPENAI_API_KEY": secret},
        )
        assert server.received and server.received[0]["model"] == "tiny"
    assert result.returncode == 0, result.stderr
    assert Screenplay.from_yaml(out.read_text()) == Screenplay.from_json(valid)
    assert secret not in result.stderr + result.stdout + out.read_text()


def test_unwritable_outputs_are_one_line_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_clean_failure(run("script", "a fox", "-o", str(blocker / "s.json")), "cannot write")
    assert_clean_failure(run("schema", "-o", str(tmp_path)), "cannot write")


def test_deeply_nested_yaml(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 5000)
    assert_clean_failure(run("script", "--from", str(path)), "deep.yaml")


def test_portrait_draws_the_described_looks(tmp_path):
    from PIL import Image

    out = tmp_path / "fox.png"
    first = run(
        "portrait", "a red fox with a crown", "--name", "Mara", "-o", str(out), "--scale", "2"
    )
    assert first.returncode == 0, first.stderr
    assert "shape=pointed colour=red accessory=crown" in first.stdout
    assert first.stderr == ""  # no progress bars, no warnings
    picture = np.array(Image.open(out))
    assert picture.shape == (128, 128, 3)
    # the body is red: many strongly red pixels, on the plain grey ground
    red = (picture[..., 0] > 170) & (picture[..., 1] < 110) & (picture[..., 2] < 110)
    assert red.mean() > 0.05
    again = tmp_path / "again.png"
    run("portrait", "a red fox with a crown", "--name", "Mara", "-o", str(again), "--scale", "2")
    if out.read_bytes() != again.read_bytes():  # say how far apart the two runs are
        other = np.array(Image.open(again)).astype(int)
        diff = np.abs(picture.astype(int) - other)
        raise AssertionError(
            f"two runs differ: {int((diff > 0).sum())} values, at most by {int(diff.max())}"
        )


def test_portrait_bad_input_leaves_output_alone(tmp_path):
    out = tmp_path / "keep.png"
    out.write_bytes(b"old")
    assert_clean_failure(run("portrait", "  ", "-o", str(out)), "description is empty")
    assert_clean_failure(run("portrait", "a fox", "-o", str(out), "--scale", "0"), "--scale")
    assert_clean_failure(run("portrait", "a fox", "-o", str(tmp_path / "x.jpg")), "PNG")
    assert_clean_failure(run("portrait", "a fox", "--name", "", "-o", str(out)), "name")
    assert out.read_bytes() == b"old"
