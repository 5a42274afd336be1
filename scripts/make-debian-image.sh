#!/usr/bin/env bash
# Make a Debian bookworm minbase base image with debootstrap (cached between runs), pack it
# with umoci and push it with skopeo. Independent of the executor's own code.
#
# Usage: make-debian-image.sh REGISTRY[:PORT] [REPO:TAG] [--with-host-ca]
#   --with-host-ca  TEST IMAGES ONLY: add this machine's extra CA certificates
#                   (/usr/local/share/ca-certificates) so RUN steps can reach PyPI/npm
#                   through an intercepting proxy. Never use it for an image you ship.
# Cache: ${EXECUTOR_TEST_CACHE:-$HOME/.cache/executor-tests}/debian-bookworm-minbase.tar
set -euo pipefail
reg=${1:?usage: make-debian-image.sh REGISTRY [REPO:TAG] [--with-host-ca]}
name=${2:-debian:bookworm}
with_ca=${3:-}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${EXECUTOR_TEST_CACHE:-$HOME/.cache/executor-tests}
tarball=$cache/debian-bookworm-minbase.tar
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  tmp=$(mktemp -d "$cache/debootstrap.XXXXXX")
  echo "make-debian-image: debootstrap --variant=minbase bookworm (cached afterwards in $tarball)" >&2
  debootstrap --variant=minbase bookworm "$tmp/root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; rm -rf "$tmp"; exit 1; }
  rm -rf "$tmp/root/var/cache/apt/archives/"*.deb "$tmp/root/var/lib/apt/lists/"* "$tmp/root/dev/"*
  tar -C "$tmp/root" --numeric-owner --xattrs -cf "$tarball.partial" .
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
if [ "$with_ca" = "--with-host-ca" ]; then
  mkdir -p bundle/rootfs/usr/local/share/ca-certificates
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -e "$crt" ] && cp "$crt" bundle/rootfs/usr/local/share/ca-certificates/
  done
  chroot bundle/rootfs /usr/sbin/update-ca-certificates >/dev/null 2>&1 || true
  # minbase has no ca-certificates package: append the CAs to a bundle pip/npm can use
  mkdir -p bundle/rootfs/etc/ssl/certs
  cat /usr/local/share/ca-certificates/*.crt >> bundle/rootfs/etc/ssl/certs/ca-certificates.crt
fi
umoci repack --image oci:base bundle >/dev/null
umoci config --image oci:base --config.cmd bash \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --architecture amd64 --os linux >/dev/null
skopeo copy -q --dest-tls-verify=false oci:oci:base "docker://$reg/$name"
echo "$reg/$name"
