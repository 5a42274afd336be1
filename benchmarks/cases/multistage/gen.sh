#!/bin/sh
# Stand-in for a compile step: 2 000 files, 20 MB of pseudo-random "objects".
set -e
out=$1
mkdir -p "$out/lib" "$out/bin"
i=0
while [ $i -lt 2000 ]; do echo "unit $i" > "$out/lib/u$i.o"; i=$((i+1)); done
head -c 20000000 /dev/urandom > "$out/bin/app"
