#!/usr/bin/env bash
# Install the Debian packages the test suite drives for real: diod (reference
# 9P server and the diodcat/diodls clients), QEMU, busybox-static and
# debootstrap (guest images for the kernel tests), systemd's systemd-analyze
# (checks docs/systemd/ninep.service). Idempotent; needs root
# (or sudo) only when something is missing.
set -euo pipefail

declare -A want=(
  [diod]=/usr/sbin/diod
  [qemu-system-x86]=/usr/bin/qemu-system-x86_64
  [busybox-static]=/bin/busybox
  [debootstrap]=/usr/sbin/debootstrap
  [e2fsprogs]=/sbin/mke2fs
  [cpio]=/usr/bin/cpio
  [kmod]=/sbin/depmod
  [systemd]=/usr/bin/systemd-analyze
)
missing=()
for pkg in "${!want[@]}"; do
  [ -e "${want[$pkg]}" ] || missing+=("$pkg")
done
# busybox-static must provide a static binary, not the dynamic busybox package.
if [ -e /bin/busybox ] && ! dpkg -s busybox-static >/dev/null 2>&1; then
  missing+=(busybox-static)
fi
if [ ${#missing[@]} -eq 0 ]; then
  echo "system test dependencies present"
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
