#!/usr/bin/env bash
# Idempotent setup for dstor: Debian packages, npm dependencies, builds.
# Runs before `npm start` and `npm test`; takes well under a second when
# nothing changed. Safe to run by hand: `bash scripts/setup.sh`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'dstor setup: %s\n' "$*" >&2; }

# 1. Debian packages the drive and the tests need (sqlite3, rsync and git: the
#    e2e tests run these ordinary tools on a mounted drive; libsecp256k1 signs
#    and verifies orders in the native addon).
DEBIAN_PACKAGES=(fuse libfuse2 make g++ python3 sqlite3 rsync git libsecp256k1-dev)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]} > 0)); then
  if [[ ${DSTOR_SKIP_APT:-} == 1 ]]; then
    say "skipping Debian packages (DSTOR_SKIP_APT=1); missing: ${missing[*]}"
  elif [[ $(id -u) == 0 ]]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    say "installing Debian packages with sudo: ${missing[*]}"
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "these Debian packages are missing: ${missing[*]}"
    say "install them as root:  sudo apt-get install ${missing[*]}"
    say "(or set DSTOR_SKIP_APT=1 to go on without them; mounting the drive will not work)"
    exit 1
  fi
fi

# 2. npm dependencies, when node_modules is missing or older than the lock file.
if [[ ! -f node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
  touch node_modules/.package-lock.json
fi

# 3. Builds (contracts, WebAssembly, native addon, TypeScript), incremental via make.
export PATH="$PWD/node_modules/.bin:$PATH"
make -s
