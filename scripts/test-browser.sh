#!/usr/bin/env bash
# The browser suite: the client's unit tests (node:test, fake WebSocket), a check
# that the committed browser/dist is the compiled browser/src, and end-to-end
# WebRTC calls in headless Debian Chromium (playwright-core) through a real
# switchboard server on 127.0.0.1. Installs Chromium and the npm dev dependencies
# when missing. Runnable on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
say() { printf '\n== %s ==\n' "$*"; }
start=$(date +%s)

if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q chromium
fi

say "npm ci (browser)"
(cd browser && npm ci --no-audit --no-fund --loglevel=error)

say "browser/dist is up to date"
(cd browser && node scripts/check-dist.mjs)

say "browser unit tests"
(cd browser && node --test test/unit/)

say "building the switchboard binary"
cargo build -p switchboard --locked

say "browser end-to-end tests (Chromium)"
mkdir -p target/e2e
server_out=target/e2e/server.out
./target/debug/switchboard --listen 127.0.0.1:0 --demo >"$server_out" 2>target/e2e/server.log &
server_pid=$!
stop_server() {
  kill -TERM "$server_pid" 2>/dev/null || return 0
  # A graceful drain takes at most --drain-timeout-ms (10 s); never hang the suite on it.
  for _ in $(seq 1 150); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$server_pid" 2>/dev/null; then
    echo "warning: the server did not stop 15 s after SIGTERM; killing it" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
}
trap stop_server EXIT
url=""
for _ in $(seq 1 100); do
  url=$(sed -n 's/^listening on \(ws:\/\/[^ ]*\).*/\1/p' "$server_out")
  [ -n "$url" ] && break
  kill -0 "$server_pid" 2>/dev/null || { cat target/e2e/server.log; echo "the server did not start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "the server printed no URL" >&2; exit 1; }
echo "server: $url"
(cd browser && SWITCHBOARD_URL="$url" SWITCHBOARD_BIN="$root/target/debug/switchboard" \
  node --test --test-concurrency=1 test/e2e/)

echo "demo screenshot: target/e2e/demo-two-participants.png"
echo "browser suite: $(( $(date +%s) - start )) s"
