#!/usr/bin/env bash
# Make a busybox base image with umoci (from Debian's busybox-static) and push it with skopeo.
# Independent of the executor's own code, so one bug cannot hide another.
# Usage: make-busybox-image.sh REGISTRY_HOST[:PORT] [REPO:TAG]   (default busybox:latest)
set -euo pipefail
reg=${1:?usage: make-busybox-image.sh REGISTRY [REPO:TAG]}
name=${2:-busybox:latest}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
umoci init --layout oci
umoci new --image oci:base
umoci unpack --image oci:base bundle >/dev/null
r=bundle/rootfs
mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,tmp,root,home,var,proc,sys,dev}
chmod 1777 "$r/tmp"; chmod 700 "$r/root"
cp /bin/busybox "$r/bin/busybox"
for applet in $(/bin/busybox --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$r/bin/$applet"
done
cat > "$r/etc/passwd" <<P
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
P
cat > "$r/etc/group" <<G
root:x:0:
daemon:x:1:
app:x:1000:
nogroup:x:65534:
G
umoci repack --image oci:base bundle >/dev/null
umoci config --image oci:base --config.cmd /bin/sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --architecture amd64 --os linux >/dev/null
skopeo copy -q --dest-tls-verify=false oci:oci:base "docker://$reg/$name"
echo "$reg/$name"
