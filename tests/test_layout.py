"""The house rules, checked: the import contracts hold (and would catch a wrong import), and
no runtime file or function is longer than it should be without saying why."""

from __future__ import annotations

import ast
import importlib.util
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("reelsmith", "schema", "planner", "memory", "renderer", "stages", "agent")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 80
LONG = "# long:"  # a line saying why a file or function is longer than that

needs_linter = pytest.mark.skipif(
    shutil.which("lint-imports") is None, reason="import-linter is not installed"
)


def check_layers():
    spec = importlib.util.spec_from_file_location("check_layers", ROOT / "tools/check_layers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_linter
def test_the_import_contracts_hold():
    result = check_layers().check(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout and "0 broken" in result.stdout


@needs_linter
def test_a_wrong_import_breaks_the_layers(tmp_path):
    """The planner importing the renderer (a sibling of its layer) fails the check."""
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if relative.parts[0] in (".git", "build") or ".venv" in relative.parts:
            continue
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, tmp_path / relative)
    shutil.copy2(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    planning = tmp_path / "planner" / "planning.py"
    planning.write_text(
        planning.read_text() + "\nfrom reelsmith.renderer.keyframes import keyframer  # noqa\n"
    )
    result = check_layers().check(tmp_path)
    assert result.returncode != 0
    assert "reelsmith.planner.planning -> reelsmith.renderer.keyframes.keyframer" in result.stdout


def _runtime_files():
    for package in RUNTIME:
        yield from sorted((ROOT / package).rglob("*.py"))


def test_no_runtime_file_is_too_long_without_a_reason():
    long = []
    for path in _runtime_files():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_FILE_LINES and not any(line.startswith(LONG) for line in lines[:40]):
            long.append(f"{path.relative_to(ROOT)}: {len(lines)} lines")
    assert long == []


def test_no_runtime_function_is_too_long_without_a_reason():
    long = []
    for path in _runtime_files():
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            reason = lines[start - 2].strip().startswith(LONG) if start >= 2 else False
            if node.end_lineno - start + 1 > MAX_FUNCTION_LINES and not reason:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []
