#!/usr/bin/env bash
# Install everything, lint, then run the tests.
#   bash scripts/test.sh           the fast tests (everything not marked slow): the default, a few minutes on 2 cores
#   bash scripts/test.sh --slow    only the tests marked slow (longer learning and end-to-end checks)
#   bash scripts/test.sh --all     both
# Other arguments go to pytest (e.g. -k resume, -x).
set -uo pipefail
cd "$(dirname "$0")/.."
selection=(-m "not slow")
args=()
for arg in "$@"; do
    case "$arg" in
        --slow) selection=(-m slow) ;;
        --all) selection=() ;;
        *) args+=("$arg") ;;
    esac
done
bash scripts/install.sh || exit 1
export HF_HUB_OFFLINE=1
.venv/bin/python -m ruff check sb3_expo tests benchmarks examples || exit 1
.venv/bin/python -m pytest -q "${selection[@]}" "${args[@]}"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$rc"
