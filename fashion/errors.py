"""The CLI's two kinds of failure a user sees.

``CLIError``: bad input (unknown values, missing or malformed files, weights that do
not fit the model), printed as one sentence with exit code 2. ``CheckFailed``: the
`check` command found a mask that no longer matches, exit code 1.
"""


class CLIError(Exception):
    """A user-facing failure: printed as one sentence, exit code 2."""


class CheckFailed(Exception):
    """The regression check found a mismatch (exit code 1)."""
