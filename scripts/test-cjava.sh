#!/usr/bin/env bash
# C and Java suite: checks that include/switchboard.h matches what the pinned
# cbindgen generates, compiles the header as C99 and C++, builds libswitchboard
# (debug), runs the C tests under AddressSanitizer + UndefinedBehaviorSanitizer
# + LeakSanitizer (shared library, and the signaling test once more linked
# statically), then the Java binding's JUnit tests through Maven.
# Runnable on its own: installs what is missing (apt, cbindgen into target/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

CBINDGEN_VERSION=0.29.4
CBINDGEN="$ROOT/target/tools/cbindgen-$CBINDGEN_VERSION/bin/cbindgen"
OUT="$ROOT/target/ctest"

say() { printf '\n== %s ==\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

# Debian packages for the tools this suite needs, installed only when missing.
missing=()
command -v gcc >/dev/null 2>&1 || missing+=(gcc)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
command -v javac >/dev/null 2>&1 || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if [ "${#missing[@]}" -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q "${missing[@]}"
fi
# ASan's runtime ships with gcc (libasan); make sure it links.
echo 'int main(void){return 0;}' | gcc -x c -fsanitize=address,undefined -o /dev/null - \
  || fail "gcc cannot link -fsanitize=address,undefined (libasan/libubsan missing)"

if [ ! -x "$CBINDGEN" ]; then
  say "installing cbindgen $CBINDGEN_VERSION into target/tools"
  # --debug: a third of the build time of a release build; it only runs once
  # per check, on one crate.
  cargo install --locked --debug "cbindgen@$CBINDGEN_VERSION" --root "$ROOT/target/tools/cbindgen-$CBINDGEN_VERSION"
fi

mkdir -p "$OUT"

say "header drift check (cbindgen $CBINDGEN_VERSION)"
"$CBINDGEN" --quiet --config bindings/c/cbindgen.toml --crate switchboard-ffi \
  --output "$OUT/switchboard.h" bindings/c
if ! diff -u include/switchboard.h "$OUT/switchboard.h"; then
  fail "include/switchboard.h is stale: regenerate it with
  $CBINDGEN --config bindings/c/cbindgen.toml --crate switchboard-ffi --output include/switchboard.h bindings/c"
fi
echo "include/switchboard.h is up to date"

say "header compiles as C99 and as C++"
gcc -x c -std=c99 -fsyntax-only -Wall -Wextra -Werror -pedantic include/switchboard.h
g++ -x c++ -std=c++11 -fsyntax-only -Wall -Wextra -Werror -pedantic include/switchboard.h
echo "ok"

say "building libswitchboard (debug)"
cargo build -p switchboard-ffi --locked

say "C tests (ASan + UBSan + LSan)"
CFLAGS=(-std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror -g -O1
        -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
        -Iinclude)
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export RUST_BACKTRACE=0
run_c_test() {
  local name=$1 bin=$2
  if ! timeout 300 "$bin" > "$OUT/$name.log" 2>&1; then
    cat "$OUT/$name.log"
    fail "C test $name"
  fi
  grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed$' "$OUT/$name.log"
  if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$OUT/$name.log"; then
    cat "$OUT/$name.log"
    fail "sanitizer report in $name"
  fi
}
for src in tests/c/test_*.c; do
  name=$(basename "$src" .c)
  gcc "${CFLAGS[@]}" "$src" -Ltarget/debug -lswitchboard -Wl,-rpath,"$ROOT/target/debug" \
    -lpthread -o "$OUT/$name"
  run_c_test "$name" "$OUT/$name"
done
# The C example of docs/C-JAVA.md, as a user would build it: bob pulls his
# room-info, then alice's offer.
gcc "${CFLAGS[@]}" tests/c/example.c -Ltarget/debug -lswitchboard -Wl,-rpath,"$ROOT/target/debug" \
  -o "$OUT/example"
if ! "$OUT/example" > "$OUT/example.log" 2>&1 || ! grep -q '^bob: room-info ' "$OUT/example.log" \
    || ! grep -q '^bob: offer {"from":"alice"' "$OUT/example.log"; then
  cat "$OUT/example.log"
  fail "the docs/C-JAVA.md example"
fi
echo "example: ok"
# The same program against the static library (the link flags docs/C-JAVA.md gives).
gcc "${CFLAGS[@]}" tests/c/test_signaling.c target/debug/libswitchboard.a \
  -lpthread -ldl -lm -lrt -lutil -lgcc_s -o "$OUT/test_signaling_static"
run_c_test test_signaling_static "$OUT/test_signaling_static"

say "Java binding (Maven, JUnit)"
(cd java && mvn -q -B install -Dswitchboard.native.dir="$ROOT/target/debug")

say "Spring Boot: the WebSocketHandler on the host-socket mode (a real app on Tomcat)"
(cd java/spring && mvn -q -B test -Dswitchboard.native.dir="$ROOT/target/debug")
# Surefire's summary, for the log.
cat java/target/surefire-reports/*.txt | grep -E '^Tests run' || true

say "C and Java: all passed"
