"""The grid of a sweep: configs x plans x seeds x job kinds, from command-line strings or a grid file.

A grid file (``.toml`` or ``.json``) holds the same keys as the command's options::

    configs = ["tiny", "tiny-llama", "my_layer.json"]   # presets or .json config files
    plans = ["fp8", "hw", "int8.toml"]                   # presets or .json/.toml plan files
    seeds = "0-9"                                         # or a list of ints
    jobs = ["golden", "bounds", "accuracy", "rtl"]
    trials = 6                                            # bound-validation trials per job
    max_rel = 0.05                                        # accuracy: fail above this max rel error
    sim = "icarus"                                        # RTL simulator
    lanes = 1                                             # RTL MAC lanes

Config and plan files named in a grid file are found relative to the grid file. Configs and plans
are resolved on the client (files are read once, here); the jobs carry their dictionaries, so
workers need refmodel but none of the user's files.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from refmodel.errors import UserError

__all__ = ["JOB_KINDS", "JobOptions", "JobSpec", "Grid", "parse_seeds", "parse_list", "load_grid_file", "build_grid"]

#: job kinds, in the order they run for one (config, plan, seed)
JOB_KINDS = ("golden", "bounds", "accuracy", "rtl")
#: keys a grid file may hold
GRID_KEYS = ("configs", "plans", "seeds", "jobs", "trials", "max_rel", "sim", "lanes")


@dataclass(frozen=True)
class JobOptions:
    """Options of the job kinds (the same for every job of a sweep).

    * ``trials``: bound-validation trials per bounds job (cycling over the trial kinds of
      :mod:`refmodel.bounds.validate_layer`).
    * ``max_rel``: an accuracy job fails when the output's max relative error exceeds it (None: no
      threshold; a non-finite value in any tensor always fails).
    * ``sim``, ``lanes``: simulator and MAC lanes of the RTL jobs.
    """

    trials: int = 6
    max_rel: float | None = None
    sim: str = "icarus"
    lanes: int = 1

    def for_kind(self, kind: str) -> dict[str, Any]:
        """The options that change what a job of ``kind`` computes (recorded with the job)."""
        if kind == "bounds":
            return {"trials": self.trials}
        if kind == "accuracy":
            return {"max_rel": self.max_rel}
        if kind == "rtl":
            return {"sim": self.sim, "lanes": self.lanes}
        return {}


@dataclass(frozen=True)
class JobSpec:
    """One job: ``kind`` on the layer ``config`` under ``plan`` with ``seed``. ``config`` and
    ``plan`` are the labels the user gave (preset names or file stems); ``config_dict`` and
    ``plan_dict`` are what the job runs (``LayerConfig.to_dict()``, ``PrecisionPlan.to_dict()``)."""

    kind: str
    config: str
    plan: str
    seed: int
    config_dict: Mapping[str, Any] = field(compare=False, hash=False)
    plan_dict: Mapping[str, Any] = field(compare=False, hash=False)
    options: JobOptions = field(default_factory=JobOptions)

    @property
    def id(self) -> str:
        """``config/plan/s<seed>/kind``: unique within a sweep."""
        return f"{self.config}/{self.plan}/s{self.seed}/{self.kind}"

    @property
    def set_name(self) -> str:
        """Directory name of this (config, plan, seed)'s golden set in the sweep's output."""
        return f"{self.config}_{self.plan}_s{self.seed}"

    def inputs(self) -> dict[str, Any]:
        """What the job was asked to do (the record's inputs)."""
        return {"job": self.kind, "config": self.config, "plan": self.plan, "seed": self.seed,
                "options": self.options.for_kind(self.kind)}


@dataclass
class Grid:
    """Configs and plans (label -> resolved object), seeds and job kinds; :meth:`jobs` crosses them."""

    configs: dict[str, Any]  # label -> LayerConfig
    plans: dict[str, Any]  # label -> PrecisionPlan
    seeds: list[int]
    kinds: list[str]
    options: JobOptions = field(default_factory=JobOptions)

    def jobs(self) -> list[JobSpec]:
        """Every job, ordered by config, plan, seed, then kind."""
        out = []
        for cl, cfg in self.configs.items():
            cd = cfg.to_dict()
            for pl, plan in self.plans.items():
                pd = plan.to_dict()
                for s in self.seeds:
                    for k in self.kinds:
                        out.append(JobSpec(k, cl, pl, s, cd, pd, self.options))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The grid as recorded in the results file."""
        return {"configs": {k: c.to_dict() for k, c in self.configs.items()},
                "plans": {k: p.to_dict() for k, p in self.plans.items()},
                "seeds": list(self.seeds), "jobs": list(self.kinds), "options": asdict(self.options)}


def parse_list(spec: str | Sequence[str], what: str) -> list[str]:
    """``"a,b,c"`` or a list of strings -> the non-empty items, in order, without duplicates
    (a duplicate is a usage error naming it)."""
    items = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    items = [s for s in items if s]
    if not items:
        raise UserError(f"--{what} is empty: give at least one")
    dup = sorted({s for s in items if items.count(s) > 1})
    if dup:
        raise UserError(f"--{what} names {dup[0]!r} twice")
    return items


def parse_seeds(spec: str | int | Sequence[int]) -> list[int]:
    """``"0-9"``, ``"0,3,5-7"``, an int or a list of ints -> seeds (non-negative, no duplicates)."""
    if isinstance(spec, bool):
        raise UserError(f"bad seeds {spec!r}: use N, A-B or A,B,C")
    if isinstance(spec, int):
        parts: list[int] = [spec]
    elif isinstance(spec, str):
        parts = []
        for tok in (t.strip() for t in spec.split(",")):
            if not tok:
                continue
            a, dash, b = tok.partition("-")
            try:
                lo, hi = (int(a), int(b)) if dash else (int(tok), int(tok))
            except ValueError:
                raise UserError(f"bad --seeds {spec!r}: use N, A-B or A,B,C with non-negative integers") from None
            if hi < lo:
                raise UserError(f"--seeds {spec!r}: the range {tok} runs backwards; write {hi}-{lo}")
            parts += range(lo, hi + 1)
    else:
        parts = []
        for v in spec:
            if isinstance(v, bool) or not isinstance(v, int):
                raise UserError(f"bad seeds {list(spec)!r}: every seed must be an integer, got {v!r}")
            parts.append(v)
    if not parts:
        raise UserError(f"bad --seeds {spec!r}: no seed given")
    bad = [s for s in parts if s < 0]
    if bad:
        raise UserError(f"--seeds {spec!r}: seed {bad[0]} is negative")
    dup = sorted({s for s in parts if parts.count(s) > 1})
    if dup:
        raise UserError(f"--seeds {spec!r}: seed {dup[0]} appears twice")
    return parts


def load_grid_file(path: str | Path) -> dict[str, Any]:
    """The keys of a ``.toml`` / ``.json`` grid file (module docstring), with config and plan file
    names made relative to the current directory. Unknown keys and unreadable files are usage
    errors naming them."""
    p = Path(path)
    if p.suffix.lower() not in (".toml", ".json"):
        raise UserError(f"--grid {path}: a grid file is .toml or .json")
    try:
        text = p.read_text()
    except OSError as e:
        raise UserError(f"--grid {path}: cannot read it ({e.strerror or e})") from None
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # Python 3.10: the tomli backport (a dependency there)
                import tomli as tomllib
            data = tomllib.loads(text)
    except ValueError as e:
        raise UserError(f"--grid {path}: not valid {p.suffix[1:].upper()}: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"--grid {path}: expected a table of keys ({', '.join(GRID_KEYS)})")
    bad = sorted(set(data) - set(GRID_KEYS))
    if bad:
        raise UserError(f"--grid {path}: unknown key {bad[0]!r}; known: {', '.join(GRID_KEYS)}")
    for key in ("configs", "plans"):
        if key in data:
            data[key] = [_relative_to(p.parent, s) for s in parse_list(data[key], key)]
    return data


def _relative_to(base: Path, spec: str) -> str:
    """A file name in a grid file is relative to the grid file (a preset name stays as it is)."""
    if Path(spec).suffix.lower() in (".json", ".toml") and not Path(spec).is_absolute():
        return str(base / spec)
    return spec


def _label(spec: str) -> str:
    """A preset keeps its name; a file is labelled by its stem."""
    p = Path(spec)
    return p.stem if p.suffix.lower() in (".json", ".toml") else spec


def _labelled(specs: str | Sequence[str], what: str) -> dict[str, str]:
    """label -> spec; two specs with one label (files with the same stem) are a usage error."""
    out: dict[str, str] = {}
    for spec in parse_list(specs, what):
        label = _label(spec)
        if label in out:
            raise UserError(f"two {what} are labelled {label!r} (file stems must differ): {out[label]}, {spec}")
        out[label] = spec
    return out


def build_grid(configs: str | Sequence[str], plans: str | Sequence[str], seeds: str | int | Sequence[int],
               kinds: str | Sequence[str], options: JobOptions | None = None) -> Grid:
    """Resolve every config and plan (presets or files; a bad one is a usage error naming it),
    parse the seeds and job kinds, and check the options."""
    from refmodel.commands._common import load_config, load_plan

    opts = options or JobOptions()
    ks = parse_list(kinds, "jobs")
    badk = [k for k in ks if k not in JOB_KINDS]
    if badk:
        raise UserError(f"unknown job kind {badk[0]!r}: use a comma-separated list of {', '.join(JOB_KINDS)}")
    ks = [k for k in JOB_KINDS if k in ks]  # run in the canonical order
    if isinstance(opts.trials, bool) or not isinstance(opts.trials, int) or opts.trials < 1:
        raise UserError(f"--trials must be an integer >= 1, got {opts.trials!r}")
    if opts.max_rel is not None and (isinstance(opts.max_rel, bool) or not isinstance(opts.max_rel, (int, float))
                                     or not math.isfinite(opts.max_rel) or opts.max_rel <= 0):
        raise UserError(f"--max-rel must be a positive number, got {opts.max_rel!r}")
    if isinstance(opts.lanes, bool) or not isinstance(opts.lanes, int) or opts.lanes < 1:
        raise UserError(f"--lanes must be an integer >= 1, got {opts.lanes!r}")
    from .jobs import SIMULATORS

    if opts.sim not in SIMULATORS:
        raise UserError(f"unknown --sim {opts.sim!r}: use {' or '.join(SIMULATORS)}")
    cfgs = {label: load_config(spec) for label, spec in _labelled(configs, "configs").items()}
    pls = {label: load_plan(spec) for label, spec in _labelled(plans, "plans").items()}
    return Grid(cfgs, pls, parse_seeds(seeds), ks, opts)
