#!/usr/bin/env bash
# README command 2: set up (once) and run the whole test suite (unit, property, RTL on Icarus).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/python -m pytest -n auto -q "$@"
