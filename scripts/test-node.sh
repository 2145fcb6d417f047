#!/usr/bin/env bash
# Node.js suite: installs Node/npm if missing, runs `npm install` inside node/
# (which builds the native addon with cargo in release mode and compiles the
# TypeScript layer), then the node:test suite: server, attach mode, client
# resume, auth hook, examples, TypeScript check, process exit, and an
# `npm install ./node` into a temporary project.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-true}"

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v openssl >/dev/null 2>&1 || missing+=(openssl) # a test certificate for the https attach test
if [ "${#missing[@]}" -gt 0 ]; then
  apt-get update
  apt-get install -y "${missing[@]}"
fi
major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 20 ]; then
  echo "Node.js >= 20 is needed (found $(node --version))" >&2
  exit 1
fi

cd node
start=$(date +%s)
npm install --no-audit --no-fund
echo "npm install (native release build + tsc): $(( $(date +%s) - start )) s"
npm test
