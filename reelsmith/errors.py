"""Errors a user can cause and fix.

Every error here is reported by the CLI as one line on stderr with exit code 2 and no
traceback. Anything else escaping the CLI is a bug in reelsmith.
"""


class ReelsmithError(Exception):
    """Base class of the errors caused by input, configuration or the environment."""


class InputError(ReelsmithError):
    """A file, prompt or option the user gave cannot be used."""


class ScreenplayError(InputError):
    """A screenplay violates the schema; the message names the field path."""


class WriterError(ReelsmithError):
    """A script writer could not produce a valid screenplay (server down, bad model output)."""
