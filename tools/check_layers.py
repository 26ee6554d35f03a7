"""Check the import contracts of pyproject.toml (`lint-imports`) over the package as installed.

setuptools maps the repository's root folders into the one package `reelsmith`
(`[tool.setuptools.package-dir]`); import-linter's graph (grimp) follows the file system, so
on the editable install it would find only `reelsmith/` and check nothing. This lays out a copy
of the sources as they are installed, in a temporary folder, and runs `lint-imports` there.

    python tools/check_layers.py            # exit status 0: every contract kept
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


ROOT = Path(__file__).resolve().parents[1]


def lay_out(root: Path, target: Path) -> Path:
    """Copy the package's sources under `target` as installed; return the package folder."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    for package, folder in config["tool"]["setuptools"]["package-dir"].items():
        where = target.joinpath(*package.split("."))
        for path in (root / folder).rglob("*.py"):
            copy = where / path.relative_to(root / folder)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
    return target / "reelsmith"


def check(root: Path = ROOT) -> subprocess.CompletedProcess:
    """`lint-imports` over a laid-out copy of `root`'s sources."""
    with tempfile.TemporaryDirectory() as folder:
        lay_out(root, Path(folder))
        env = {**os.environ, "PYTHONPATH": folder}
        command = [shutil.which("lint-imports") or "lint-imports", "--no-cache"]
        config = [str(root / "pyproject.toml")]
        return subprocess.run(command + config, cwd=folder, env=env, capture_output=True, text=True)


if __name__ == "__main__":
    result = check()
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.exit(result.returncode)
