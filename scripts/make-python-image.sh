#!/usr/bin/env bash
# Make a "python slim"-like base image without Docker Hub: debootstrap --variant=minbase bookworm
# with python3 python3-venv python3-pip ca-certificates (Debian's Python 3.11), docs/man/locales
# and apt lists removed. The rootfs tarball is cached between runs; the image is packed with umoci
# and pushed with skopeo. Independent of the executor's own code.
#
# Usage: make-python-image.sh REGISTRY[:PORT] [REPO:TAG]      (default python:3.11-slim)
# Cache: ${EXECUTOR_TEST_CACHE:-$HOME/.cache/executor-tests}/python-bookworm-minbase.tar
# Mirror: ${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# Never adds this machine's extra CA certificates: the image stands in for a public base.
set -euo pipefail
reg=${1:?usage: make-python-image.sh REGISTRY [REPO:TAG]}
name=${2:-python:3.11-slim}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${EXECUTOR_TEST_CACHE:-$HOME/.cache/executor-tests}
tarball=$cache/python-bookworm-minbase.tar
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  tmp=$(mktemp -d "$cache/debootstrap-python.XXXXXX")
  echo "make-python-image: debootstrap --variant=minbase bookworm + python3 (cached afterwards in $tarball)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    bookworm "$tmp/root" "$mirror" >"$cache/debootstrap-python.log" 2>&1 \
    || { tail -20 "$cache/debootstrap-python.log" >&2; rm -rf "$tmp"; exit 1; }
  r=$tmp/root
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/dev/* \
    "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/*.log \
    "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
  find "$r/usr/lib/python3" "$r/usr/lib/python3.11" -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
  tar -C "$r" --numeric-owner --xattrs -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  rm -rf "$tmp"
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
umoci init --layout oci >/dev/null
umoci new --image oci:base >/dev/null
umoci unpack --image oci:base bundle >/dev/null
tar -C bundle/rootfs --numeric-owner -xf "$tarball"
rm -f bundle/rootfs/etc/resolv.conf bundle/rootfs/etc/hostname
umoci repack --image oci:base bundle >/dev/null
umoci config --image oci:base --config.cmd python3 \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --config.env LANG=C.UTF-8 \
  --architecture amd64 --os linux >/dev/null
skopeo copy -q --dest-tls-verify=false oci:oci:base "docker://$reg/$name"
echo "$reg/$name"
