#!/usr/bin/env bash
# Create .venv (if needed) and install sb3_expo with its test extras into it.
# torch is installed first, pinned by constraints.txt, so nothing pulls a different build.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -c constraints.txt torch
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[test]"
