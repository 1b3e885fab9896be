#!/usr/bin/env bash
# Installs the pinned client tools once (re-run when a pin changes): a Python virtualenv in
# tests/clients/.venv (requirements.txt), node_modules (package-lock.json), both from the
# public registries, and Debian's Chromium for the checkout's browser test. Called by .ci/run
# and by the client tests themselves; concurrent calls wait.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec 9>"$here/.setup.lock"
flock 9
venv="$here/.venv"
if ! cmp -s "$here/requirements.txt" "$venv/.installed" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  cp "$here/requirements.txt" "$venv/.installed"
fi
if ! cmp -s "$here/package-lock.json" "$here/node_modules/.installed" 2>/dev/null; then
  (cd "$here" && npm ci --silent --no-audit --no-fund)
  cp "$here/package-lock.json" "$here/node_modules/.installed"
fi
if ! command -v chromium >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium >/dev/null
fi
