#!/usr/bin/env bash
# Creates .venv with the pinned dependencies of requirements.lock and eventpipe itself (editable).
# Called by make; safe to re-run. Needs Python >= 3.11.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "[eventpipe] $*" >&2; }

pick_python() {
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      command -v "$candidate"; return 0
    fi
  done
  return 1
}

py=$(pick_python) || { say "ERROR: eventpipe needs Python >= 3.11 (python3 is $(python3 --version 2>&1)). Install it, or set PYTHON=/path/to/python3.11."; exit 1; }

if [ ! -x .venv/bin/python ]; then
  say "creating .venv with $py ($("$py" --version 2>&1))"
  if ! "$py" -m venv .venv 2>/tmp/eventpipe-venv.err; then
    rm -rf .venv
    if [ -f /etc/debian_version ] && [ "$(id -u)" = 0 ]; then
      say "the venv module is missing: apt-get install python3-venv"
      DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
      "$py" -m venv .venv
    else
      say "ERROR: '$py -m venv' failed: $(cat /tmp/eventpipe-venv.err). On Debian: apt-get install python3-venv."; exit 1
    fi
  fi
fi
say "installing pinned dependencies from requirements.lock into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.lock
# The build backend is chatty about editable installs; keep its output unless it fails.
if ! .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e . >.venv/install.log 2>&1; then
  cat .venv/install.log >&2; say "ERROR: installing eventpipe into .venv failed (above)"; exit 1
fi
touch .venv/.installed
say ".venv ready"
