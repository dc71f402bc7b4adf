#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# setup-vm.sh — what the VM test harness (scripts/vmtest.sh) needs on a Debian 12 host:
# QEMU, a static busybox for the guests, cpio and xz, and a Debian kernel taken from the
# linux-image-amd64 package without installing it (apt-get download + dpkg-deb -x into
# CACHE, default build/vm-cache). Idempotent: installs and fetches only what is missing.
# Needs root (or sudo) for the packages. Exit 0 ready, 77 when something cannot be had
# (the reason printed), so that callers can skip.
# Prints nothing on stdout but the final "setup-vm: ..." lines; apt's chatter goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${1:-build/vm-cache}

PKGS=(qemu-system-x86 busybox-static cpio xz-utils)
missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -gt 0 ]; then
	if [ -n "$SUDO" ] && ! command -v sudo >/dev/null; then
		echo "setup-vm: SKIP: need root or sudo to install ${missing[*]}"
		exit 77
	fi
	echo "setup-vm: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq >&2 || true
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		{ echo "setup-vm: SKIP: apt-get install ${missing[*]} failed"; exit 77; }
fi

# The kernel: the package's files extracted into CACHE/kpkg (never installed into /boot).
mkdir -p "$CACHE"
if ! compgen -G "$CACHE/kpkg/boot/vmlinuz-*" >/dev/null; then
	echo "setup-vm: fetching linux-image-amd64 into $CACHE"
	rm -rf "$CACHE/deb" "$CACHE/kpkg"
	mkdir -p "$CACHE/deb"
	# linux-image-amd64 is a meta package: the kernel is in the linux-image-VERSION it depends on.
	dep=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	[ -n "$dep" ] || { echo "setup-vm: SKIP: apt-cache knows no linux-image-amd64 dependency (apt-get update?)"; exit 77; }
	(cd "$CACHE/deb" && apt-get download "$dep" >&2) ||
		{ echo "setup-vm: SKIP: apt-get download $dep failed"; exit 77; }
	dpkg-deb -x "$CACHE"/deb/*.deb "$CACHE/kpkg"
	rm -rf "$CACHE/deb"
fi
echo "setup-vm: ready ($(qemu-system-x86_64 --version | head -1); kernel $(basename "$(ls "$CACHE"/kpkg/boot/vmlinuz-*)"))"
