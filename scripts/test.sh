#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what is missing,
# then checks formatting and lints, and runs the Rust unit, integration and
# property tests. Later suites (Python, Node, browser, C/Java, Redis cluster)
# add their sections here, so this stays the one command to run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each section says how long the run has taken so far (find the slow ones).
say() { printf '\n== %s == (%dm%02ds)\n' "$*" $((SECONDS / 60)) $((SECONDS % 60)); }

# Rust toolchain components (preinstalled with rustup here; added if missing).
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  say "installing rustfmt and clippy"
  rustup component add rustfmt clippy
fi

# The cluster tests (core/tests/cluster.rs) start their own redis-server (a
# random port on 127.0.0.1, a temp dir); only the binary is needed.
if ! command -v redis-server >/dev/null 2>&1; then
  say "installing redis-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y redis-server || { apt-get update && apt-get install -y redis-server; }
fi

say "format"
cargo fmt --all -- --check

say "docs: every snippet is copied from a test that runs"
python3 scripts/check-doc-snippets.py

say "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "rust tests"
cargo test --workspace --locked

# Suites of the bindings, the browser client and the cluster; each installs what
# it needs (apt-get, venv, npm) and is runnable on its own.
run_suite() {
  say "$1"
  "./scripts/$2"
}
# (suites are added here, one line each)
run_suite "security and operations" test-security.sh
run_suite "browser client, demo page, Chromium end-to-end" test-browser.sh
run_suite "python" test-python.sh
run_suite "C and Java" test-cjava.sh
run_suite "Node.js package" test-node.sh
run_suite "parity: every host mode, one set of cases" test-parity.sh
run_suite "packages: the jar with its native library" test-packages.sh

say "all tests passed"
