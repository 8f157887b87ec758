#!/usr/bin/env bash
# The tests: set up the environment if needed, then run pytest.
#   bash scripts/test.sh          default suite (skips tests marked slow)
#   bash scripts/test.sh --slow   only the slow/optional tests
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"
if [ "${1:-}" = "--slow" ]; then
  shift
  exec "$PYTHON" -m pytest -m slow "$@"
fi
exec "$PYTHON" -m pytest -m "not slow" -n 2 "$@"
