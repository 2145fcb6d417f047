#!/usr/bin/env bash
# Security and operations suite (issue 4), beyond what `cargo test --workspace`
# already runs (auth, TLS, proxies, TURN, metrics, the stable fuzz harness):
#   1. the documented nginx configuration, run for real (installs nginx-light);
#   2. a longer run of the stable fuzz harness (seeded mutations);
#   3. a short coverage-guided `cargo fuzz` run of both targets, when a nightly
#      toolchain is there (cargo-fuzz is installed if missing). FUZZ_SECONDS=0
#      skips it; SWITCHBOARD_FUZZ=required makes a missing nightly an error.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== security: %s ==\n' "$*"; }

if ! [ -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then
  say "installing nginx-light"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi

say "nginx in front of the server (docs/DEPLOYMENT.md config)"
SWITCHBOARD_REQUIRE_NGINX=1 cargo test -p switchboard --locked --test nginx

say "fuzz harness on stable, longer run"
FUZZ_ITERATIONS="${FUZZ_ITERATIONS:-3000}" cargo test -p switchboard --locked --test fuzz_harness

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
if [ "$FUZZ_SECONDS" = 0 ]; then
  say "cargo fuzz skipped (FUZZ_SECONDS=0)"
elif rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  if ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
  fi
  for target in parse_message hub_messages; do
    say "cargo fuzz run $target (${FUZZ_SECONDS}s)"
    # Fresh corpus dir each run (ignored by git), seeded from fuzz/seeds.
    mkdir -p "fuzz/corpus/$target"
    (cd fuzz && cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1)
  done
else
  if [ "${SWITCHBOARD_FUZZ:-}" = required ]; then
    echo "cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
  fi
  say "no nightly toolchain: coverage-guided fuzzing not run (the stable harness ran above)"
fi

say "security suite passed"
