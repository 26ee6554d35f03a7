"""`python -m reelsmith.training MODEL ...` (training/cli.py): errors in one line."""

from reelsmith.errors import ReelsmithError
from reelsmith.training.cli import main

try:
    main()
except ReelsmithError as exc:
    raise SystemExit(f"reelsmith.training: error: {exc}") from None
