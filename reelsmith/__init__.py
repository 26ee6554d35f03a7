"""reelsmith: from an idea or a screenplay to a long, character-consistent movie.

The import package maps the repository's root folders as sub-packages:
``reelsmith.planner``, ``reelsmith.memory``, ``reelsmith.renderer``, ``reelsmith.agent``,
``reelsmith.world`` and ``reelsmith.evaluation``.
"""

import os as _os

__version__ = "0.1.0"

# Same inputs and seed, same bytes, from one process to the next: MKL (PyTorch's CPU BLAS)
# otherwise may pick code paths that round differently from run to run. MKL reads this when
# it is first used, so it is set here, before any model runs; a value the user set wins.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
