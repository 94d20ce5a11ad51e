#!/usr/bin/env bash
# The main job: install everything, then train online EXPO on Pendulum-v1 and print the result.
# Extra arguments go to examples/online_pendulum.py (e.g. --steps 5000).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/python examples/online_pendulum.py "$@"
