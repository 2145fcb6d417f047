#!/usr/bin/env bash
# The parity suite (tests/parity): one set of case files run against every host
# mode that serves the core through its connection kit. Runs after the Python
# and Node suites (it uses their venv and the built npm package); builds the
# two Rust hosts (debug). Host modes not in this list yet: Spring Boot and the
# C host-socket mode (see tests/parity/HOSTS.md).
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

run() { "$PY" tests/parity/run.py --name "$1" --host "$2" tests/parity/cases; }
run standalone "$PY tests/parity/hosts/standalone.py"
run rust-server "target/debug/examples/parity_host"
run python-route "$PY tests/parity/hosts/python_route.py"
run node-attach "node tests/parity/hosts/node_attach.mjs"
