#!/usr/bin/env bash
# Build the documentation site into site/ (mkdocs build --strict: any warning fails). Extra arguments go to mkdocs.
# Installs sb3_expo with its docs extra into .venv first (creating it if needed), as scripts/install.sh does.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[docs]"
NO_MKDOCS_2_WARNING=1 .venv/bin/python -m mkdocs build --strict "$@"
