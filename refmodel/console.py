"""Rich console shared by the CLI: wide enough for the tables when output is not a terminal."""

import os

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    """A console on stdout (or stderr); when the output is not a terminal and ``COLUMNS`` is not
    set, 160 columns wide so that piped tables are not folded."""
    c = Console(stderr=stderr)
    if not c.is_terminal and not os.environ.get("COLUMNS"):
        c = Console(stderr=stderr, width=160)
    return c
