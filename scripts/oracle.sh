#!/usr/bin/env bash
# The oracles nobody here wrote: mkcomposefs/composefs-info 1.0.8 and ostree 2026.4 (with composefs)
# from Debian sid, in a cached minbase chroot (git-ignored).
#
#   scripts/oracle.sh               build the chroot once (about 30 s), then do nothing
#   scripts/oracle.sh run CMD ARG…  run CMD inside it; /proc, /tmp and this project's .cache/ are
#                                   bind-mounted (at the same paths) in a private mount namespace, so
#                                   host paths there work as they are and nothing stays mounted
#   scripts/oracle.sh path          print the chroot directory
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${OSTREE_OCI_ORACLE_DIR:-$root/.cache/oracle-sid}

ensure() {
  [ -f "$dir/.ready" ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "oracle: building the sid chroot needs root: sudo debootstrap --variant=minbase --include=composefs,ostree sid '$dir'" >&2
    exit 1
  fi
  command -v debootstrap >/dev/null || { echo "oracle: debootstrap missing; run scripts/setup.sh" >&2; exit 1; }
  echo "oracle: building Debian sid chroot with composefs and ostree in $dir (once)" >&2
  rm -rf "$dir.partial"
  mkdir -p "$(dirname "$dir")"
  debootstrap --variant=minbase --include=composefs,ostree sid "$dir.partial" >"$dir.log" 2>&1 || {
    echo "oracle: debootstrap failed, see $dir.log" >&2; tail -20 "$dir.log" >&2; exit 1; }
  chroot "$dir.partial" mkcomposefs --help >/dev/null 2>&1 || true
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
  {
    echo "mkcomposefs: $(chroot "$dir" dpkg-query -W -f '${Version}' composefs)"
    echo "ostree: $(chroot "$dir" dpkg-query -W -f '${Version}' ostree)"
  } >"$dir/.ready"
  cat "$dir/.ready" >&2
}

case "${1:-ensure}" in
  ensure) ensure ;;
  path) echo "$dir" ;;
  run)
    shift
    ensure
    exec unshare -m --propagation private sh -c '
      d=$1; c=$2; shift 2
      # .cache first: the chroot itself may live below it, and a later bind would hide these.
      mkdir -p "$d$c" && mount --bind "$c" "$d$c"
      mount --bind /proc "$d/proc"
      mount --rbind /dev "$d/dev" 2>/dev/null || true
      mount --bind /tmp "$d/tmp"
      exec chroot "$d" "$@"' oracle "$(realpath "$dir")" "$(realpath "$root/.cache")" "$@"
    ;;
  *) echo "usage: scripts/oracle.sh [ensure|path|run CMD…]" >&2; exit 2 ;;
esac
