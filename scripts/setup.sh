#!/usr/bin/env bash
# Idempotent setup: Debian packages, npm packages, TypeScript build. Safe to run before every
# `npm test` / `npm run demo`; does nothing that is already done.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

# Debian package → a file that proves it is installed.
declare -A probe=(
  [libostree-1-1]=/usr/lib/x86_64-linux-gnu/libostree-1.so.1
  [ostree]=/usr/bin/ostree
  [fsverity]=/usr/bin/fsverity
  [skopeo]=/usr/bin/skopeo
  [umoci]=/usr/bin/umoci
  [zstd]=/usr/bin/zstd
  [debootstrap]=/usr/sbin/debootstrap
  [docker-registry]=/usr/bin/docker-registry
  [gnupg]=/usr/bin/gpg
  [openssl]=/usr/bin/openssl
  [time]=/usr/bin/time
  [util-linux]=/usr/bin/unshare
  [attr]=/usr/bin/setfattr
  [strace]=/usr/bin/strace
  [xz-utils]=/usr/bin/xz
  [bzip2]=/usr/bin/bzip2
  [gcc]=/usr/bin/gcc
  [libc6-dev]=/usr/include/stdlib.h
)
missing=()
for pkg in "${!probe[@]}"; do
  if [ ! -e "${probe[$pkg]}" ]; then
    # Other architectures keep the library elsewhere: ask dpkg before calling it missing.
    dpkg-query -W -f '${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages. Run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
fi

# npm packages: install when node_modules is missing or older than the lockfile.
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: npm ci" >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
fi

# The native SHA-256 kernel for fs-verity (ostree-bindings/sha256-blocks.ts); optional at run time.
lib=ostree-bindings/native/libsha256-4k.so
if [ ! -f "$lib" ] || [ ostree-bindings/native/sha256-4k.c -nt "$lib" ]; then
  echo "setup: building $lib" >&2
  gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o "$lib.tmp" ostree-bindings/native/sha256-4k.c
  mv "$lib.tmp" "$lib"
fi

# Build when any source is newer than the last build.
stamp=dist/.build-stamp
if [ ! -f "$stamp" ] || [ -n "$(find src ostree-bindings scripts tsconfig.json package.json -newer "$stamp" \( -name '*.ts' -o -name '*.json' \) -print -quit)" ]; then
  echo "setup: building (tsc)" >&2
  npx tsc -p tsconfig.json
  touch "$stamp"
fi
