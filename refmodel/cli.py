"""``refmodel`` command line. Each subcommand lives in ``refmodel/commands/<name>.py`` and exposes
``register(app)``. Exit codes: 0 pass, 1 a check failed (:class:`refmodel.errors.CheckFailed`),
2 usage error (bad option, spec or file; printed as one line, no traceback)."""

from __future__ import annotations

import importlib
import sys

import typer

EXIT_CODES = "Exit codes: 0 pass, 1 a check failed, 2 usage error (bad option, spec or file)."

app = typer.Typer(
    name="refmodel",
    help="Bit-accurate fixed-point/minifloat reference model of a transformer layer: formats, "
    "golden vectors, error bounds and RTL verification.\n\n" + EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: command modules, registered in this order
COMMANDS = ["formats", "demo", "accuracy", "bounds", "golden", "plan", "study", "sweep"]


def _print_version(value: bool) -> None:
    if value:
        from refmodel import __version__

        typer.echo(f"refmodel {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    pass


def _register() -> None:
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"refmodel.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"refmodel.commands.{name}":
                continue  # command not built yet
            raise
        mod.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point: 0 pass; 1 a check failed (one line, no traceback); 2 user errors (bad spec,
    bad file, bad option value, a path that cannot be read or written: one line, no traceback);
    130 interrupted (Ctrl-C)."""
    from refmodel.errors import CheckFailed, UserError

    try:
        app(args=argv, standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0) if not isinstance(e.code, str) else 1
    except CheckFailed as e:
        typer.secho(f"FAIL: {e}", fg=typer.colors.RED, err=True)
        return 1
    except (UserError, ValueError, OverflowError, OSError) as e:
        # OSError: a path the user gave cannot be read or written (exists, is not a directory,
        # permission denied, disk full): the message names the path
        typer.secho(f"error: {e}", fg=typer.colors.RED, err=True)
        return 2
    except KeyboardInterrupt:
        typer.secho("interrupted", fg=typer.colors.RED, err=True)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
