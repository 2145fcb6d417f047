#!/usr/bin/env bash
# Packages as users install them. Each artifact is checked where users meet it:
# - Rust: the MSRV of Cargo.toml compiles (`cargo +<rust-version> check`), the
#   core crate packs and builds from its .crate (`cargo package`), and its docs
#   build without a warning (every public item documented).
# - Python: the sdist builds with one `pip install` in a fresh venv (the abi3
#   wheel itself is installed and tested by scripts/test-python.sh).
# - Node: the main npm package and its linux-x64-gnu package, packed, install
#   into an empty project on a PATH without cargo and pass a smoke test.
# - Java: the jar carries the release libswitchboard.so under JNA's platform
#   resource path (linux-x86-64/); with the Spring module's jar, a Spring Boot
#   app (no -Djna.library.path, no cargo) serves the parity cases of rooms and
#   relay.
# Runs after the Python, Node, C/Java and parity suites (it reuses their
# release addon, Maven repository and venv). Runnable on its own after them.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
say() { printf '\n== %s ==\n' "$*"; }
OUT=target/packages
rm -rf "$OUT" && mkdir -p "$OUT/native"
BARE_PATH=/usr/bin:/bin
if env PATH="$BARE_PATH" sh -c 'command -v cargo || command -v rustc' >/dev/null 2>&1; then
  echo "cargo is on $BARE_PATH: the checks without a Rust toolchain would prove nothing" >&2
  exit 1
fi

MSRV=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
say "rust: the MSRV ($MSRV) compiles the workspace"
if ! rustup run "$MSRV" rustc --version >/dev/null 2>&1; then
  rustup toolchain install "$MSRV" --profile minimal
fi
# Libraries and binaries (tests use the same language), without the binary's
# allocator feature (a C build, not Rust code): the half of the check that costs.
cargo "+$MSRV" check --workspace --lib --bins --no-default-features --locked

say "rust: cargo package of the core crate (builds from the .crate alone)"
# --allow-dirty: a local run packs the working tree as it is (CI runs on a clean clone).
cargo package -p switchboard --locked --allow-dirty
echo "$(ls target/package/switchboard-*.crate): $(( $(stat -c %s target/package/switchboard-*.crate) / 1024 )) KiB"

say "rust: cargo doc without warnings"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p switchboard --locked

say "python: the sdist builds with one pip install in a fresh venv"
(cd python && "../target/py-build-venv/bin/maturin" sdist --out "../$OUT")
rm -rf "$OUT/sdist-venv" && python3 -m venv "$OUT/sdist-venv"
# The shared target dir only saves recompiling the dependencies (each artifact once).
CARGO_TARGET_DIR="$ROOT/target" "$OUT/sdist-venv/bin/python" -m pip install --quiet \
  --disable-pip-version-check "$OUT"/switchboard_signaling-*.tar.gz
(cd "$OUT" && env PATH="$BARE_PATH" timeout 120 sdist-venv/bin/python "$ROOT/tests/packages/python_smoke.py")

say "npm: the main package and its linux-x64-gnu package, into an empty project without cargo"
mapfile -t TARBALLS < <(node node/scripts/pack.mjs "$ROOT/$OUT/npm")
APP="$OUT/npm-app"
mkdir -p "$APP"
echo '{ "name": "app", "version": "1.0.0", "private": true }' > "$APP/package.json"
(cd "$APP" && env PATH="$BARE_PATH" npm install --no-audit --no-fund "${TARBALLS[@]}")
cp tests/packages/node-smoke.cjs "$APP/"
(cd "$APP" && env PATH="$BARE_PATH" timeout 120 node node-smoke.cjs)

say "release libswitchboard (stripped of debug info, for the jar)"
cargo build --release -p switchboard-ffi --locked
cp target/release/libswitchboard.so "$OUT/native/libswitchboard.so"
strip --strip-debug "$OUT/native/libswitchboard.so"
echo "libswitchboard.so: $(( $(stat -c %s "$OUT/native/libswitchboard.so") / 1024 )) KiB"

say "the jar: mvn package with the library inside"
(cd java && mvn -q -B clean package -DskipTests -Dswitchboard.bundle.dir="$ROOT/$OUT/native")
JAR=java/target/switchboard-0.1.0.jar
# The listing goes to a file first: `grep -q` on a pipe closes it early and,
# under pipefail, the writer's SIGPIPE would fail a jar that is fine.
jar tf "$JAR" > "$OUT/jar-listing.txt"
grep -qx 'linux-x86-64/libswitchboard.so' "$OUT/jar-listing.txt" \
  || { echo "the jar does not carry linux-x86-64/libswitchboard.so" >&2; exit 1; }
cp "$JAR" "$OUT/switchboard-0.1.0.jar"
# The development build bundles nothing again (the other suites load target/debug).
(cd java && mvn -q -B clean)
echo "jar: $(( $(stat -c %s "$OUT/switchboard-0.1.0.jar") / 1024 )) KiB"

say "a Spring Boot app with the two jars (binding, Spring module): no Rust toolchain, no jna.library.path"
[ -f "$HOME/.m2/repository/dev/switchboard/switchboard/0.1.0/switchboard-0.1.0.jar" ] \
  || (cd java && mvn -q -B install -DskipTests)
(cd java/spring && mvn -q -B package -DskipTests dependency:build-classpath \
  -Dmdep.outputFile=target/cp.txt -Dmdep.includeScope=test)
# The classpath the Spring module resolves, with the binding's jar swapped for
# the packaged one (the only place the library can come from now).
CP=$(tr ':' '\n' < java/spring/target/cp.txt | grep -v '/dev/switchboard/switchboard/' | paste -sd: -)
CP="java/spring/target/test-classes:java/spring/target/switchboard-spring-0.1.0.jar:$ROOT/$OUT/switchboard-0.1.0.jar:$CP"
ONLY=(--only rooms/join-room-info-user-joined-user-left --only relay/offer-answer-candidate-classic-shapes-sender-stamped)
target/py-venv/bin/python tests/parity/run.py --name spring-boot-from-jar \
  --host "env PATH=$BARE_PATH LD_LIBRARY_PATH= java -cp $CP dev.switchboard.parity.ParityHost" \
  "${ONLY[@]}" tests/parity/cases
say "packages: all passed"
