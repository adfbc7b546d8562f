#!/usr/bin/env bash
# README command 1: set up (once) and run the main job, `refmodel demo`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REFMODEL_EXTRAS=${REFMODEL_EXTRAS:-test,rtl,models,bench,cluster} bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec .venv/bin/refmodel demo "$@"
