#!/usr/bin/env bash
# Set up (or reuse) the Python environment for alhelpers. Sourced by scripts/study.sh and
# scripts/test.sh; safe to run again: it only installs when requirements changed.
#
# - Uses the active virtualenv / conda env if there is one, else creates ./.venv.
# - Installs torch==2.13.0 first unless a torch is already importable (see install_torch): on Linux
#   without an NVIDIA GPU the CPU build from the PyTorch index, so pip never pulls the multi-GB
#   CUDA stack; then the project with its test extras (which include the runner extras).
# - On Python 3.11 installs with requirements-lock.txt as constraints (the versions CI tests).
#
# Environment:
#   ALHELPERS_TORCH_INDEX   where torch comes from: unset/"auto" (above), "pypi" (plain pip install:
#                           PyPI and pip's own configuration), or an index URL such as
#                           https://download.pytorch.org/whl/cu126 (used as pip --index-url).
#   ALHELPERS_SETUP_DRY_RUN=1  install_torch prints the pip command instead of running it.
#   ALHELPERS_SETUP_LIB=1   sourcing this file only defines the functions below (for the tests).

ALHELPERS_TORCH_SPEC="torch==2.13.0"
ALHELPERS_TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"

# Run a pip command (words), hiding this machine's find-links noise; its exit status is pip's.
# With ALHELPERS_SETUP_DRY_RUN set, print the command instead.
_setup_pip() {
  if [ -n "${ALHELPERS_SETUP_DRY_RUN:-}" ]; then
    echo "[setup] dry run: $*"
    return 0
  fi
  local out rc=0
  out="$("$@" 2>&1)" || rc=$?
  printf '%s\n' "$out" | grep -v "is ignored: it is neither a file nor a directory" || true
  return "$rc"
}

# True when an NVIDIA GPU is usable: an nvidia-smi that runs and lists a GPU.
_setup_has_nvidia_gpu() {
  command -v nvidia-smi >/dev/null 2>&1 || return 1
  local out
  if command -v timeout >/dev/null 2>&1; then
    out="$(timeout 20 nvidia-smi -L 2>/dev/null)" || return 1
  else
    out="$(nvidia-smi -L 2>/dev/null)" || return 1
  fi
  case "$out" in *GPU*) return 0 ;; *) return 1 ;; esac
}

# True when the package index $2 answers within 5 s (checked with Python $1, no pip involved).
_setup_index_reachable() {
  "$1" -c 'import sys, urllib.request as u
try:
    u.urlopen(u.Request(sys.argv[1].rstrip("/") + "/torch/", method="HEAD"), timeout=5)
except Exception:
    sys.exit(1)' "$2" >/dev/null 2>&1
}

# install_torch PYTHON: install $ALHELPERS_TORCH_SPEC with PYTHON's pip, and say where from.
#   Linux x86_64/aarch64, no NVIDIA GPU: the CPU build from the PyTorch CPU index; when that index
#     cannot be reached (5 s check) or the install from it fails, the plain install instead.
#   NVIDIA GPU, macOS (PyPI's torch is CPU-only there), anything else: the plain install.
#   ALHELPERS_TORCH_INDEX=pypi | URL overrides the choice (no fallback for an explicit URL).
install_torch() {
  local py="$1" spec="$ALHELPERS_TORCH_SPEC" choice="${ALHELPERS_TORCH_INDEX:-auto}" index=""
  case "$choice" in
    auto | "")
      local os arch
      os="$(uname -s 2>/dev/null || echo unknown)"
      arch="$(uname -m 2>/dev/null || echo unknown)"
      case "$os/$arch" in
        Linux/x86_64 | Linux/aarch64)
          if _setup_has_nvidia_gpu; then
            echo "[setup] installing $spec from PyPI (NVIDIA GPU found: the CUDA build)"
          elif _setup_index_reachable "$py" "$ALHELPERS_TORCH_CPU_INDEX"; then
            index="$ALHELPERS_TORCH_CPU_INDEX"
            echo "[setup] installing $spec, CPU build, from $index (no NVIDIA GPU found)"
          else
            echo "[setup] $ALHELPERS_TORCH_CPU_INDEX cannot be reached: installing $spec with plain pip" \
              "instead (PyPI or pip's configured sources; from PyPI this is the CUDA build)"
          fi ;;
        Darwin/*)
          echo "[setup] installing $spec from PyPI (CPU/MPS build on macOS)" ;;
        *)
          echo "[setup] installing $spec from PyPI ($os/$arch)" ;;
      esac ;;
    pypi | PyPI | plain)
      echo "[setup] installing $spec with plain pip (ALHELPERS_TORCH_INDEX=$choice)" ;;
    *)
      echo "[setup] installing $spec from $choice (ALHELPERS_TORCH_INDEX)"
      _setup_pip "$py" -m pip install -q --index-url "$choice" "$spec"
      return ;;
  esac
  if [ -n "$index" ]; then
    if _setup_pip "$py" -m pip install -q --index-url "$index" --timeout 15 --retries 2 "$spec"; then
      return 0
    fi
    echo "[setup] installing from $index failed: installing $spec with plain pip instead"
  fi
  _setup_pip "$py" -m pip install -q "$spec"
}

if [ -n "${ALHELPERS_SETUP_LIB:-}" ]; then
  return 0 2>/dev/null || exit 0
fi

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
  if "$PY" -c "import torch" 2>/dev/null; then
    echo "[setup] keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
  else
    install_torch "$PY" || true  # a failure shows in the import check below
  fi
  CONSTRAINTS=()
  if "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    CONSTRAINTS=(-c requirements-lock.txt)
  fi
  echo "[setup] installing alhelpers and its dependencies (first run: a few minutes)"
  # (the ${..+..} form: bash 3.2 on macOS calls an empty array unbound under set -u)
  "$PY" -m pip install -q ${CONSTRAINTS[@]+"${CONSTRAINTS[@]}"} -r requirements.txt -e ".[test]" 2>&1 \
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
