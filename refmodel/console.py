"""Rich console shared by the CLI: wide enough for the tables when output is not a terminal."""

from rich.console import Console


def make_console(stderr: bool = False) -> Console:
    c = Console(stderr=stderr)
    if not c.is_terminal:
        c = Console(stderr=stderr, width=160)
    return c
