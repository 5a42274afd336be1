#!/usr/bin/env bash
# Make a "python slim"-like base image without Docker Hub: debootstrap --variant=minbase bookworm
# with python3 python3-venv python3-pip ca-certificates (Debian's Python 3.11), docs/man/locales
# and apt lists removed. The rootfs tarball is cached between runs; the image is packed with umoci
# and pushed with skopeo. Independent of the executor's own code.
#
# Usage: make-python-image.sh REGISTRY[:PORT] [REPO:TAG]      (default python:3.11-slim)
# Cache: ${EXECUTOR_TEST_CACHE:-$HOME/.cache/executor-tests}/python-bookworm-minbase.tar
# Never adds this machine's extra CA certificates: the image stands in for a public base.
set -euo pipefail
reg=${1:?usage: make-python-image.sh REGISTRY [REPO:TAG]}
name=${2:-python:3.11-slim}
. "$(dirname "$0")/lib/debian-base.sh"
tarball=$(cached_rootfs python-bookworm-minbase python3,python3-venv,python3-pip,ca-certificates trim)
pack_and_push "$tarball" "$reg" "$name" python3 no LANG=C.UTF-8
