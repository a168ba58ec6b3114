#!/usr/bin/env bash
# The main job: set up, build the embedded default image (if needed), load it, run it hardened,
# trigger the shipped example DAG and report its result.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$HERE/scripts/setup.sh"
cd "$HERE"
exec hardflow demo "$@"
