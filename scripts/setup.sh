#!/usr/bin/env bash
# Set up (or reuse) the Python environment for alhelpers. Sourced by scripts/study.sh and
# scripts/test.sh; safe to run again: it only installs when requirements changed.
#
# - Uses the active virtualenv / conda env if there is one, else creates ./.venv.
# - Installs torch==2.13.0 (CPU build) first unless a torch is already importable, so pip never
#   pulls the multi-GB CUDA build; then the project and its test extras.
# - On Python 3.11 installs with requirements-lock.txt as constraints (the versions CI tests).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
elif [ -n "${CONDA_PREFIX:-}" ] && [ "${CONDA_DEFAULT_ENV:-base}" != "base" ]; then
  PY="$CONDA_PREFIX/bin/python"
else
  if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating virtual environment .venv"
    python3 -m venv .venv
  fi
  PY="$ROOT/.venv/bin/python"
  export VIRTUAL_ENV="$ROOT/.venv"
  export PATH="$ROOT/.venv/bin:$PATH"
fi

STAMP="$("$PY" -c 'import sys; print(sys.prefix)')/.alhelpers-setup"
WANT="$(cat pyproject.toml requirements.txt requirements-lock.txt | sha256sum | cut -c1-16)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] installing torch==2.13.0 (CPU build)"
    "$PY" -m pip install -q torch==2.13.0 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
  fi
  CONSTRAINTS=()
  if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    CONSTRAINTS=(-c requirements-lock.txt)
  fi
  echo "[setup] installing alhelpers and its dependencies (first run: a few minutes)"
  "$PY" -m pip install -q "${CONSTRAINTS[@]}" -r requirements.txt -e ".[test]" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  # test-only reference implementation for the BMDAL equivalence tests (its own pins are stale,
  # hence --no-deps; it needs only torch, numpy and dill)
  "$PY" -m pip install -q --no-deps bmdal-reg==3.0.2 dill 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  "$PY" -c "import alhelpers, torch, matminer, papermill" \
    || { echo "[setup] install failed: see the pip output above" >&2; exit 1; }
  "$PY" -m ipykernel install --sys-prefix --name python3 >/dev/null
  echo "$WANT" > "$STAMP"
fi
export PYTHON="$PY"
