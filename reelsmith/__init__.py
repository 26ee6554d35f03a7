"""reelsmith: from an idea or a screenplay to a long, character-consistent movie.

The import package maps the repository's root folders as sub-packages:
``reelsmith.planner``, ``reelsmith.memory``, ``reelsmith.renderer``, ``reelsmith.agent``,
``reelsmith.world`` and ``reelsmith.evaluation``.
"""

__version__ = "0.1.0"
