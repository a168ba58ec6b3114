#!/usr/bin/env bash
# Regenerate requirements/hardflow.lock.txt: hardflow's own Python dependencies (runtime, dev and
# the editable install's build tools from build.in), each file with its sha256; scripts/setup.sh
# installs it with pip --require-hashes. Pins already in the lock are kept; pass --upgrade (or
# --upgrade-package NAME) to move them. The index comes from uv's configuration on this machine
# (UV_DEFAULT_INDEX, uv.toml), never from the lock. tests/test_requirements_lock.py fails while
# pyproject.toml and the lock disagree.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UV="${UV:-$HERE/.venv/bin/uv}"
[ -x "$UV" ] || UV="$(command -v uv)"
cd "$HERE"
"$UV" pip compile pyproject.toml requirements/build.in --extra dev --python-version 3.11 \
  --generate-hashes --no-emit-index-url --no-emit-find-links --quiet \
  -o requirements/hardflow.lock.txt "$@"
