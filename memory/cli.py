"""`reelsmith series …`: list, show, export, import and forget series bibles."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from reelsmith.errors import InputError
from reelsmith.memory.archive import export_series, import_series
from reelsmith.memory.names import check_series_name
from reelsmith.memory.store import SeriesStore
from reelsmith.settings import Settings

app = typer.Typer(
    help="Series bibles: the characters that live across episodes.", no_args_is_help=True
)
err = Console(stderr=True, highlight=False)


def _home(home: Path | None) -> Path:
    return (home or Settings.from_env().home) / "series"


def _open(name: str, home: Path | None):
    check_series_name(name)
    return SeriesStore.open(_home(home) / name, name, create=False)


HOME = typer.Option(
    None, "--home", help="reelsmith home (default $REELSMITH_HOME or ~/.reelsmith)."
)


@app.command("list")
def list_series(home: Path | None = HOME) -> None:
    """List the series bibles."""
    root = _home(home)
    names = (
        sorted(
            p.name
            for p in root.iterdir()
            if (p / "bible.sqlite").exists() and not p.name.startswith(".")
        )
        if root.is_dir()
        else []
    )
    for name in names:
        try:
            with _open(name, home) as store:
                print(
                    f"{name}\t{len(store.characters())} characters\t"
                    f"{len(store.episodes())} episodes"
                )
        except InputError as exc:
            err.print(f"skipping {root / name}: {exc}")
    if not names:
        err.print(f"no series under {root}")


@app.command()
def show(name: str, home: Path | None = HOME) -> None:
    """Show a series: its episodes and characters."""
    with _open(name, home) as store:
        print(f"series {name}: {len(store.episodes())} episodes")
        for episode in store.episodes():
            print(f"  episode {episode['id']}: {episode['name']}")
        for c in store.characters():
            looks = ", ".join(f"{v}" for v in (c["identity"] or {}).values())
            pinned = " (pinned)" if c["pinned"] else ""
            print(
                f"  {c['key']}: {c['name']}{pinned} — {c['description'] or '-'}"
                f"{' [' + looks + ']' if looks else ''}; "
                f"{len(c['images'])} images, embeddings: "
                f"{', '.join(c['embeddings']) or '-'}"
            )


@app.command()
def export(
    name: str,
    output: Path = typer.Option(..., "--output", "-o", help="Archive file to write."),
    home: Path | None = HOME,
) -> None:
    """Export a series bible as one file."""
    with _open(name, home) as store:
        export_series(store, output)
    err.print(f"wrote {output}")


@app.command("import")
def import_(
    archive: Path,
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a different series."),
    home: Path | None = HOME,
) -> None:
    """Import a series bible from an archive file."""
    folder = import_series(archive, _home(home), overwrite=overwrite)
    err.print(f"imported into {folder}")


@app.command()
def forget(name: str, character: str, home: Path | None = HOME) -> None:
    """Remove a character from a series."""
    with _open(name, home) as store:
        store.forget(character)
    err.print(f"forgot {character} in {name}")
