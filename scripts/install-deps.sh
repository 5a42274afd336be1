#!/usr/bin/env bash
# Install everything the project needs on a fresh Debian 12 machine (run as root):
# Debian packages for the real test parts, and a virtualenv in .venv with the package.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(umoci skopeo runc buildah docker-registry debootstrap busybox-static uidmap
      time apache2-utils openssl ca-certificates python3-venv git make curl
      qemu-user-static binfmt-support    # arm64 emulation for tests/multiarch (tests/support/multiarch.py)
      gcc libc6-dev      # static probe programs of the RUN isolation tests (tests/support/probes), else skipped
      openssh-server     # sshd binary: git-clone's ssh-directory test runs its own on a loopback port
      libnss-wrapper)    # git-clone's ssh as an OpenShift-style uid with no passwd entry (its tests)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)   # @ibm/tekton-lint
if ((${#missing[@]})); then
  echo "install-deps: apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  log=.venv/install.log
  if ! { .venv/bin/pip install -q --upgrade pip && .venv/bin/pip install -q -e '.[test]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-deps: pip install failed (log above, also in $log)" >&2
    exit 1
  fi
  touch "$stamp"
fi
# Byte-compile the checkout (pip compiles what it installs, but this install is editable): with
# PYTHONDONTWRITEBYTECODE set, every executor process would otherwise recompile each module.
.venv/bin/python -m compileall -q executor >/dev/null
echo "install-deps: ok ($(.venv/bin/python --version))"
