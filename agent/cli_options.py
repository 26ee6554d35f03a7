"""The command-line options `reelsmith script` and `reelsmith make` share, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Prompt = Annotated[
    str | None,
    typer.Argument(
        help="The idea, in a sentence or a page (a screenplay file's path reads that file)."
    ),
]
Source = Annotated[
    Path | None,
    typer.Option("--from", help="A screenplay or shot list: .fountain, .csv, .yaml/.yml, .json."),
]
Writer = Annotated[
    str, typer.Option("--writer", "-w", help="offline | openai | transformers | vllm.")
]
Model = Annotated[
    str | None,
    typer.Option("--model", help="The writer's model: server model name, or a local folder."),
]
BaseUrl = Annotated[
    str | None,
    typer.Option("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1."),
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", help="Key for the server (held in memory only); or OPENAI_API_KEY."),
]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the server.")]
Attempts = Annotated[int, typer.Option("--attempts", help="Repair attempts before giving up.")]
TrustRemoteCode = Annotated[
    bool,
    typer.Option("--trust-remote-code", help="Allow a local model's own Python code to run."),
]
Scenes = Annotated[int | None, typer.Option("--scenes", help="Number of scenes.")]
Shots = Annotated[int | None, typer.Option("--shots", help="Total number of shots.")]
Duration = Annotated[float | None, typer.Option("--duration", help="Target length, seconds.")]
Style = Annotated[str, typer.Option("--style", help="Visual style, free text.")]
Seed = Annotated[int, typer.Option("--seed", help="Same inputs and seed: the same result.")]
