# Shared by make-debian-image.sh and make-python-image.sh (source it; bash).
# debootstrap a bookworm minbase root once (cached as a tarball), then pack it with umoci and
# push it with skopeo. Independent of the executor's own code, so one bug cannot hide another.

CACHE_DIR=${EXECUTOR_TEST_CACHE:-$HOME/.cache/executor-tests}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

# cached_rootfs NAME INCLUDE [TRIM]: print the path of NAME.tar, debootstrapping it first when absent.
# INCLUDE is debootstrap's --include list ("" for none); TRIM=trim removes docs, man pages, locales
# and __pycache__ to keep the image small.
cached_rootfs() {
  local name=$1 include=$2 trim=${3:-}
  local tarball=$CACHE_DIR/$name.tar
  mkdir -p "$CACHE_DIR"
  if [ ! -s "$tarball" ]; then
    local tmp log=$CACHE_DIR/$name.debootstrap.log
    tmp=$(mktemp -d "$CACHE_DIR/$name.XXXXXX")
    echo "debootstrap --variant=minbase bookworm ${include:+(+ $include) }-> $tarball (cached)" >&2
    debootstrap --variant=minbase ${include:+--include=$include} bookworm "$tmp/root" "$DEBIAN_MIRROR" \
      >"$log" 2>&1 || { tail -20 "$log" >&2; rm -rf "$tmp"; return 1; }
    local r=$tmp/root
    rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/lib/apt/lists/* "$r"/dev/*
    if [ "$trim" = trim ]; then
      rm -rf "$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/var/log/*.log \
        "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old
      find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
      find "$r/usr/lib" -name __pycache__ -type d -prune -exec rm -rf {} + 2>/dev/null || true
    fi
    tar -C "$r" --numeric-owner --xattrs -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
    rm -rf "$tmp"
  fi
  echo "$tarball"
}

# pack_and_push TARBALL REGISTRY NAME CMD WITH_HOST_CA [ENV...]: one-layer image from TARBALL,
# pushed as REGISTRY/NAME. WITH_HOST_CA=yes adds this machine's extra CA certificates (TEST IMAGES
# ONLY, so RUN steps can reach PyPI/npm through an intercepting proxy).
pack_and_push() {
  local tarball=$1 reg=$2 name=$3 cmd=$4 with_ca=$5
  shift 5
  local work
  work=$(mktemp -d)
  (
    set -e
    cd "$work"
    umoci init --layout oci >/dev/null
    umoci new --image oci:base >/dev/null
    umoci unpack --image oci:base bundle >/dev/null
    tar -C bundle/rootfs --numeric-owner -xf "$tarball"
    rm -f bundle/rootfs/etc/resolv.conf bundle/rootfs/etc/hostname
    if [ "$with_ca" = yes ]; then
      mkdir -p bundle/rootfs/usr/local/share/ca-certificates bundle/rootfs/etc/ssl/certs
      for crt in /usr/local/share/ca-certificates/*.crt; do
        [ -e "$crt" ] && cp "$crt" bundle/rootfs/usr/local/share/ca-certificates/
      done
      chroot bundle/rootfs /usr/sbin/update-ca-certificates >/dev/null 2>&1 || true
      # minbase has no ca-certificates package: append the CAs to the bundle pip/npm read
      cat /usr/local/share/ca-certificates/*.crt >> bundle/rootfs/etc/ssl/certs/ca-certificates.crt
    fi
    umoci repack --image oci:base bundle >/dev/null
    local envs=(--config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    for e in "$@"; do envs+=(--config.env "$e"); done
    umoci config --image oci:base --config.cmd "$cmd" "${envs[@]}" --architecture amd64 --os linux >/dev/null
    skopeo copy -q --dest-tls-verify=false oci:oci:base "docker://$reg/$name"
  )
  local rc=$?
  rm -rf "$work"
  [ $rc -eq 0 ] && echo "$reg/$name"
  return $rc
}
