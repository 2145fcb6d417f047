#!/usr/bin/env bash
# Security and operations suite (issue 4), beyond what `cargo test --workspace`
# already runs (auth, TLS, proxies, TURN, metrics, the stable fuzz harness):
#   1. the documented nginx configuration, run for real (installs nginx-light);
#   2. a longer run of the stable fuzz harness (seeded mutations);
#   3. when asked (SWITCHBOARD_FUZZ=1), a short coverage-guided `cargo fuzz`
#      run of both targets (FUZZ_SECONDS each, default 20) with a nightly
#      toolchain and cargo-fuzz; SWITCHBOARD_FUZZ=required also installs
#      cargo-fuzz and makes a missing nightly an error. Building the targets
#      with sanitizers takes ~10 minutes on 2 cores, so it is not the default.
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
have_nightly() { rustup toolchain list 2>/dev/null | grep '^nightly' >/dev/null; }
if [ "${SWITCHBOARD_FUZZ:-}" = required ]; then
  have_nightly || { echo "cargo fuzz needs a nightly toolchain (rustup toolchain install nightly)" >&2; exit 1; }
  cargo fuzz --version >/dev/null 2>&1 || { say "installing cargo-fuzz"; cargo install cargo-fuzz --locked; }
fi
# Opt-in: building the targets with sanitizers takes ~10 minutes on 2 cores,
# half the test command's budget; the 10-minute runs are in docs/BENCHMARKS.md.
if [ -n "${SWITCHBOARD_FUZZ:-}" ] && [ "$FUZZ_SECONDS" != 0 ] && have_nightly && cargo fuzz --version >/dev/null 2>&1; then
  for target in parse_message hub_messages; do
    say "cargo fuzz run $target (${FUZZ_SECONDS}s)"
    # The corpus grows in fuzz/corpus (ignored by git), seeded from fuzz/seeds.
    mkdir -p "fuzz/corpus/$target"
    (cd fuzz && cargo +nightly fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -print_final_stats=1)
  done
else
  say "coverage-guided fuzzing not run (opt in with SWITCHBOARD_FUZZ=1, or =required to install cargo-fuzz); the harness ran on stable above"
fi

say "security suite passed"
