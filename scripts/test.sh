#!/usr/bin/env bash
# Runs every check: type-check (already done by the build, repeated here so a
# stale build can never hide an error), lint, then the test suite.
# Long soak/chaos runs are behind DSTOR_SOAK=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PWD/node_modules/.bin:$PATH"
tsc --noEmit -p tsconfig.json
biome check --error-on-warnings .
exec node --test --test-concurrency="${DSTOR_TEST_CONCURRENCY:-2}" "dist/test/**/*.test.js"
