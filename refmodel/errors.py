"""Errors the CLI reports as one line, without a traceback, and their exit codes.

* :class:`UserError` -- a problem with the user's input (bad spec, bad file, bad option): exit 2.
* :class:`CheckFailed` -- a check ran to completion and failed (a golden set differs from its
  regeneration, a bound is violated, a simulation mismatches): exit 1.
"""


class UserError(ValueError):
    """A problem with the user's input, reported without a traceback by the CLI (exit code 2)."""


class CheckFailed(Exception):
    """A check ran and failed; the CLI prints the message and exits with code 1."""
