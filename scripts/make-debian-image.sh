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
with_ca=no
[ "${3:-}" = "--with-host-ca" ] && with_ca=yes
. "$(dirname "$0")/lib/debian-base.sh"
tarball=$(cached_rootfs debian-bookworm-minbase "")
pack_and_push "$tarball" "$reg" "$name" bash "$with_ca"
