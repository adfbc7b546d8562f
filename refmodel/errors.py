"""Errors a user can fix (bad spec, bad file, bad option): the CLI prints them as one line."""


class UserError(ValueError):
    """A problem with the user's input, reported without a traceback by the CLI."""
