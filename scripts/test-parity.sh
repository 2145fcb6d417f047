#!/usr/bin/env bash
# The parity suite (tests/parity): one set of case files run against every host
# mode that serves the core through its connection kit. Runs after the Python
# and Node suites (it uses their venv and the built npm package); builds the
# two Rust hosts and libswitchboard (debug), and the C host-socket host with
# AddressSanitizer. Not in this list yet: the Spring Boot host (see
# tests/parity/HOSTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=target/py-venv/bin/python
[ -x "$PY" ] || ./scripts/test-python.sh
[ -f node/esm/index.mjs ] || (cd node && npm install --no-audit --no-fund)
if ! command -v redis-server >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi
cargo build -p switchboard --bin switchboard --example parity_host --locked
cargo build -p switchboard-ffi --locked
mkdir -p target/ctest
gcc -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -O1 \
  -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -Iinclude \
  tests/c/parity_host.c -Ltarget/debug -lswitchboard -Wl,-rpath,"$PWD/target/debug" -lpthread \
  -o target/ctest/parity_host

run() { "$PY" tests/parity/run.py --name "$1" --host "$2" tests/parity/cases; }
run standalone "$PY tests/parity/hosts/standalone.py"
run rust-server "target/debug/examples/parity_host"
run python-route "$PY tests/parity/hosts/python_route.py"
run node-attach "node tests/parity/hosts/node_attach.mjs"
run c-host-socket "target/ctest/parity_host"
