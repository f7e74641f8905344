#!/usr/bin/env bash
# Builds, once, a Debian 13 "trixie" chroot with FastNetMon 1.2.9 (Debian's 1.2.9-0+deb13u1)
# for `make e2e`: DIR stays under target/ and is reused, so a second run starts in seconds.
# The mirror is the one this machine's apt already uses; nothing about it is written into the
# project. usage: tests/e2e/trixie-root.sh DIR
set -euo pipefail
root=${1:?usage: trixie-root.sh DIR}
# FastNetMon, and logrotate to rotate our log as Debian does.
packages="fastnetmon logrotate"
apt_get() { DEBIAN_FRONTEND=noninteractive apt-get "$@"; }
if [ -x "$root/usr/sbin/fastnetmon" ]; then
  # A chroot built by an earlier version of this script: what it lacks, added in place.
  [ -x "$root/usr/sbin/logrotate" ] || chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q logrotate >>"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; exit 1; }
  exit 0
fi
command -v debootstrap >/dev/null || { apt_get update -qq && apt_get install -y -qq debootstrap; } >/dev/null
# deb822 sources (Debian 12's default), else the one-line sources.list; a missing file is no
# error (pipefail would end the script without a word).
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1 || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 !~ /^\[/ {print $2; exit} $1 == "deb" {print $3; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { echo "trixie-root.sh: no Debian mirror in this machine's apt sources" >&2; exit 1; }

partial="$root.partial"
# A half-built chroot may still have proc mounted from an interrupted run.
umount "$partial/proc" 2>/dev/null || true
rm -rf "$partial"
mkdir -p "$(dirname "$root")"
started=$SECONDS
debootstrap --variant=minbase trixie "$partial" "$mirror" >"$partial.log" 2>&1 \
  || { tail -20 "$partial.log" >&2; exit 1; }
# No service may start inside the chroot while packages install.
printf '#!/bin/sh\nexit 101\n' >"$partial/usr/sbin/policy-rc.d"
chmod 755 "$partial/usr/sbin/policy-rc.d"
mount -t proc proc "$partial/proc"
trap 'umount "$partial/proc" 2>/dev/null || true' EXIT
chroot "$partial" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $packages >>"$partial.log" 2>&1 \
  || { tail -20 "$partial.log" >&2; exit 1; }
umount "$partial/proc"
trap - EXIT
mv "$partial" "$root"
mv "$partial.log" "$root.log"
echo "trixie chroot with $(chroot "$root" dpkg-query -W -f '${Package} ${Version}' fastnetmon) in $((SECONDS - started))s: $root"
