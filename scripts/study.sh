#!/usr/bin/env bash
# The main job: set up the environment if needed, then run the study on the offline snapshot.
# Extra arguments go to `python -m alhelpers.run study` (e.g. --systems C --seeds 0).
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/setup.sh"
exec "$PYTHON" -m alhelpers.run study "$@"
