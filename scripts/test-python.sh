#!/usr/bin/env bash
# The Python suite: builds the release wheel once (`maturin build --release`:
# one abi3 wheel for CPython >= 3.9 with a manylinux tag), installs that file
# with its test dependencies into a fresh venv, and runs pytest there (real
# servers, uvicorn, WebSocket clients, fork, mypy.stubtest) on a PATH without
# the Rust toolchain: what users install is what is tested. The sdist is built
# and installed by scripts/test-packages.sh. Runnable on its own.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=target/py-venv

if ! "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 9)' 2>/dev/null; then
  echo "Python >= 3.9 is needed (found: $("$PYTHON" --version 2>&1 || echo none))" >&2
  exit 1
fi
make_venv() {
  rm -rf "$1"
  if ! "$PYTHON" -m venv "$1" 2>/dev/null; then
    # Debian's python3 ships venv separately.
    rm -rf "$1"
    apt-get update && apt-get install -y python3-venv
    "$PYTHON" -m venv "$1"
  fi
}

# The cluster test of route mode runs a real redis-server.
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi

PIP=(-m pip install --quiet --disable-pip-version-check)
# maturin lives in a venv of its own: the suite's venv must not need it.
BUILD_VENV=target/py-build-venv
[ -x "$BUILD_VENV/bin/maturin" ] || { make_venv "$BUILD_VENV" && "$BUILD_VENV/bin/python" "${PIP[@]}" "maturin>=1.5,<2.0"; }
start=$(date +%s)
rm -rf target/wheels && mkdir -p target/wheels
(cd python && "../$BUILD_VENV/bin/maturin" build --release --out ../target/wheels)
WHEEL=$(echo target/wheels/switchboard_signaling-*.whl)
case "$WHEEL" in
  *-cp39-abi3-manylinux*_x86_64.whl) ;;
  *) echo "expected one abi3 manylinux wheel, got: $WHEEL" >&2; exit 1 ;;
esac
echo "maturin build --release: $(( $(date +%s) - start )) s, $(basename "$WHEEL"), $(( $(stat -c %s "$WHEEL") / 1024 )) KiB"

# A fresh venv each run, on a PATH without cargo and rustc.
make_venv "$VENV"
BARE_PATH="$(pwd)/$VENV/bin:/usr/bin:/bin"
env PATH="$BARE_PATH" "$VENV/bin/python" "${PIP[@]}" --upgrade pip
env PATH="$BARE_PATH" "$VENV/bin/python" "${PIP[@]}" "$WHEEL[test]"

# Not `python -m pytest`: that would put python/ (the sources, without the
# built extension) first on sys.path instead of the installed package.
if env PATH="$BARE_PATH" sh -c 'command -v cargo || command -v rustc' >/dev/null; then
  echo "cargo or rustc is on $BARE_PATH: the suite would not prove the wheel stands alone" >&2
  exit 1
fi
env PATH="$BARE_PATH" "$VENV/bin/pytest" -q -p no:cacheprovider python/tests
