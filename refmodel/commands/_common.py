"""Helpers shared by the CLI commands: plan/config lookup with one-line errors, progress bars."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from refmodel.errors import UserError

if TYPE_CHECKING:
    from refmodel.layer.config import LayerConfig
    from refmodel.layer.plan import PrecisionPlan


def load_plan(spec: str) -> PrecisionPlan:
    """A preset name or a .json / .toml plan file."""
    from refmodel.layer.plan import PRESET_NAMES, PrecisionPlan

    if spec in PRESET_NAMES:
        return PrecisionPlan.from_name(spec)
    p = Path(spec)
    if p.suffix.lower() in (".json", ".toml"):
        if not p.exists():
            raise UserError(f"plan file not found: {spec}")
        try:
            return PrecisionPlan.load(p)
        except ValueError as e:
            msg = str(e)
            raise UserError(msg if spec in msg else f"plan file {spec}: {msg}") from None
    raise UserError(f"unknown plan {spec!r}: use a preset ({', '.join(PRESET_NAMES)}) or a .json/.toml plan file")


def load_config(spec: str) -> LayerConfig:
    """A preset config name or a .json config file."""
    import json

    from refmodel.layer.config import LayerConfig, preset_names

    p = Path(spec)
    if p.suffix.lower() == ".json":
        if not p.exists():
            raise UserError(f"config file not found: {spec}")
        try:
            return LayerConfig.from_dict(json.loads(p.read_text()))
        except (ValueError, TypeError, KeyError) as e:
            raise UserError(f"config file {spec}: {e}") from None
    try:
        return LayerConfig.from_name(spec)
    except ValueError:
        raise UserError(f"unknown config {spec!r}: use a preset ({', '.join(preset_names())}) or a .json file") from None


def parse_layers(spec: str, n_layers: int) -> list[int]:
    """'all', 'N', 'A-B' or 'A,B,C' -> layer indices within 0..n_layers-1."""
    s = spec.strip().lower()
    if s == "all":
        return list(range(n_layers))
    out: list[int] = []
    try:
        for part in s.split(","):
            if "-" in part:
                a, b = part.split("-", 1)
                if int(a) > int(b):
                    raise UserError(f"--layers {spec!r}: the range {part.strip()} runs backwards; write "
                                    f"{int(b)}-{int(a)} (layers run in order as a chain)")
                out += list(range(int(a), int(b) + 1))
            else:
                out.append(int(part))
    except ValueError as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"bad --layers {spec!r}: use all, N, A-B or A,B,C") from None
    if not out:
        raise UserError(f"bad --layers {spec!r}: no layer given")
    bad = [i for i in out if not 0 <= i < n_layers]
    if bad:
        raise UserError(f"--layers {spec!r}: layer {bad[0]} is outside 0..{n_layers - 1}")
    if out != list(range(out[0], out[0] + len(out))):
        raise UserError(f"--layers {spec!r}: layers must be consecutive (they run as a chain)")
    return out


def json_ready(obj: Any) -> Any:
    """``obj`` with numpy scalars/arrays turned into Python values and non-finite floats into the
    strings ``"inf"``, ``"-inf"``, ``"nan"`` (JSON has no literal for them)."""
    import math

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_ready(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def print_json(obj: Any) -> None:
    """The ``--json`` output of a command: one JSON object on stdout, nothing else on stdout
    (progress and warnings go to stderr)."""
    import json
    import sys

    sys.stdout.write(json.dumps(json_ready(obj), indent=2, sort_keys=True) + "\n")


@contextmanager
def progress_bar(description: str, total: int) -> Iterator:
    """A rich progress bar on stderr; yields a function that advances it by one."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from refmodel.console import make_console

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=make_console(stderr=True), transient=True) as prog:
        task = prog.add_task(description, total=total)
        yield lambda n=1: prog.advance(task, n)
