#!/usr/bin/env bash
# The test command: sets the machine up, then lint, type check and the whole test suite,
# including the end-to-end tests that build the default image and run it in podman.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HARDFLOW_SETUP_TESTS=1 source "$HERE/scripts/setup.sh"
cd "$HERE"
echo "== ruff"; ruff check src tests
echo "== mypy"; mypy
echo "== pytest"; exec pytest -p no:cacheprovider --durations=30 "$@"
