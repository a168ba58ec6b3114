#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for hardflow: system packages, podman, a virtualenv.
# Idempotent; sourced by run-default.sh and test.sh. Needs root or sudo for apt.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# the image's Python writes .pyc files and __pycache__ folders under the build's umask: the
# README's digests are made with 022 (sourced: it holds for the build and tests that follow)
umask 022
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need_apt=0
extra=""
# the tests also drive the Airflow UI in headless Chromium
if [ "${HARDFLOW_SETUP_TESTS:-0}" = 1 ]; then
  # chromium: the UI test; chromium-driver: the OIDC login test (selenium); skopeo +
  # docker-registry: push to a loopback registry; qemu-user-static: the multi-platform test runs
  # the arm64 image's Python under qemu-aarch64-static. The OIDC test's provider needs Node.js
  # >= 20.19 and npm (not from Debian 12, whose Node.js is older: the test skips without them).
  extra="chromium chromium-driver skopeo docker-registry qemu-user-static"
  for cmd in chromium chromedriver skopeo docker-registry qemu-aarch64-static; do
    command -v "$cmd" >/dev/null 2>&1 || need_apt=1
  done
fi
for cmd in gpgv podman runc python3; do command -v "$cmd" >/dev/null 2>&1 || need_apt=1; done
[ -f /usr/share/keyrings/debian-archive-keyring.gpg ] || need_apt=1
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt=1
if [ "$need_apt" = 1 ] || [ "${HARDFLOW_FORCE_APT:-0}" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends \
    python3 python3-venv python3-pip gpgv gnupg debian-archive-keyring ca-certificates \
    util-linux $extra >/dev/null
fi
$SUDO bash "$HERE/.ci/podman-setup.sh" >/dev/null
# a Debian package service we only need as a program: don't leave it running
if [ -n "$extra" ] && command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

VENV="${HARDFLOW_VENV:-$HERE/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# hardflow's own dependencies (runtime + dev + the build tools of the editable install), every
# file checked against its sha256 in the lock (requirements/update.sh regenerates it): the
# library versions that write the image's bytes (zstandard, installer) are the lock's on every
# machine. Skipped when the venv was made from this very lock, pyproject.toml and folder.
LOCK="$HERE/requirements/hardflow.lock.txt"
STAMP="$VENV/.hardflow-lock.sha256"
want="$(cat "$LOCK" "$HERE/pyproject.toml" | sha256sum | cut -d' ' -f1) $HERE"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  rm -f "$STAMP"
  "$VENV/bin/python" -m pip install -q --require-hashes -r "$LOCK"
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$HERE"
  printf '%s\n' "$want" >"$STAMP"
fi
# checkov, the outside judge of the rendered Kubernetes manifests in the tests, pins versions of
# libraries we use too (cyclonedx, spdx, jsonschema ...): it gets a virtualenv of its own
# (about a minute to install; kept between runs).
if [ "${HARDFLOW_SETUP_TESTS:-0}" = 1 ]; then
  CHECKOV_VENV="${HARDFLOW_CHECKOV_VENV:-$HERE/.venv-checkov}"
  if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    "$CHECKOV_VENV/bin/python" -m pip install -q "checkov==3.3.30"
  fi
  export HARDFLOW_CHECKOV="$CHECKOV_VENV/bin/checkov"
fi
export PATH="$VENV/bin:$PATH"
