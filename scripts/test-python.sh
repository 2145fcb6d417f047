#!/usr/bin/env bash
# The Python suite: builds and installs the package with pip exactly as a user
# would (`pip install ./python`: maturin from PyPI as the PEP 517 backend builds
# the abi3 extension in release mode), into a venv under target/, with the test
# dependencies, then runs pytest (real servers, uvicorn, WebSocket clients,
# fork, mypy.stubtest). Runnable on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=target/py-venv

if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  echo "Python >= 3.9 is needed (found: $("$PYTHON" --version 2>&1 || echo none))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    rm -rf "$VENV"
    apt-get update && apt-get install -y python3-venv
    "$PYTHON" -m venv "$VENV"
  fi
fi

# The cluster test of route mode runs a real redis-server.
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
start=$(date +%s)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "./python[test]"
echo "pip install ./python[test]: $(( $(date +%s) - start )) s"

# Not `python -m pytest`: that would put python/ (the sources, without the
# built extension) first on sys.path instead of the installed package.
"$VENV/bin/pytest" -q -p no:cacheprovider python/tests
