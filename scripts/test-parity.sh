#!/usr/bin/env bash
# The parity suite (tests/parity): one set of case files run against every host
# mode that serves the core through its connection kit. Runs after the Python
# Node and Java suites (it uses their venv, the built npm package and the
# installed Java binding); builds the two Rust hosts and libswitchboard (debug),
# the C host-socket host with AddressSanitizer, and the Spring Boot host's
# classpath (see tests/parity/HOSTS.md).
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
# The Spring Boot host: the core Java binding installed, the test classpath written out.
[ -f "$HOME/.m2/repository/dev/switchboard/switchboard/0.1.0/switchboard-0.1.0.jar" ] \
  || (cd java && mvn -q -B install -DskipTests)
(cd java/spring && mvn -q -B test-compile dependency:build-classpath \
  -Dmdep.outputFile=target/cp.txt -Dmdep.includeScope=test)
SPRING_CP="java/spring/target/test-classes:java/spring/target/classes:$(cat java/spring/target/cp.txt)"

run() { "$PY" tests/parity/run.py --name "$1" --host "$2" tests/parity/cases; }
run standalone "$PY tests/parity/hosts/standalone.py"
run rust-server "target/debug/examples/parity_host"
run python-route "$PY tests/parity/hosts/python_route.py"
run node-attach "node tests/parity/hosts/node_attach.mjs"
run c-host-socket "target/ctest/parity_host"
run spring-boot "java -Djna.library.path=target/debug -cp $SPRING_CP dev.switchboard.parity.ParityHost"
