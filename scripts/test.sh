#!/usr/bin/env bash
# README command 2: set up (once), lint (ruff), type-check (mypy), then run the whole test suite
# (unit, property, RTL on Icarus). A ruff or mypy finding fails the script before pytest runs.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
echo "[test] ruff check ."
.venv/bin/ruff check -q .
echo "[test] mypy (refmodel, config in pyproject.toml)"
.venv/bin/python -m mypy
exec .venv/bin/python -m pytest -n auto -q "$@"
