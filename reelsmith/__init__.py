"""reelsmith: from an idea or a screenplay to a long, character-consistent movie.

    import reelsmith
    movie = reelsmith.make("a fox and a robot cross the desert at dusk", output="movie")

The import package maps the repository's root folders as sub-packages (``reelsmith.schema``,
``reelsmith.planner``, ``reelsmith.memory``, ``reelsmith.renderer``, ``reelsmith.stages``,
``reelsmith.agent``, ...); `make`, `resume` and `status` are `reelsmith.agent.api`'s.
"""

import os as _os

__version__ = "0.1.0"
__all__ = ["make", "resume", "status"]

# Same inputs and seed, same bytes, from one process to the next: MKL (PyTorch's CPU BLAS)
# otherwise may pick code paths that round differently from run to run. MKL reads this when
# it is first used, so it is set here, before any model runs; a value the user set wins.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def __getattr__(name: str):
    # loaded lazily: the API brings torch, diffusers and langgraph, which `import reelsmith`
    # (and so every sub-package) must not
    if name in __all__:
        from reelsmith.agent import api

        return getattr(api, name)
    raise AttributeError(f"module 'reelsmith' has no attribute {name!r}")
