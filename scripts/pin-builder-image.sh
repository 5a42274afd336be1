#!/usr/bin/env bash
# Pin the executor image default of the Tekton catalog to an image digest, in one pass over every
# copy of it, by hand in a working tree (scripts/release.py pins every image default, this one
# included, in a release copy; see tekton/README.md "Images and releases"):
#   Task kaniko-build        param BUILDER_IMAGE
#   StepAction kaniko-build  param BUILDER_IMAGE
#   Pipeline build-multiarch param BUILDER_IMAGE
#   Pipeline build-and-push  param builder-image (passed on to the Task's BUILDER_IMAGE)
#   TriggerTemplate build-and-push-run  param builder-image (passed on to the Pipeline)
#
# Usage: scripts/pin-builder-image.sh IMAGE@sha256:<64 hex> [FILE|DIR ...]
#   IMAGE  the executor image, with or without a tag: ghcr.io/org/executor:0.2.0@sha256:...
#   DIR    (default: tekton/ of this repository) every *.yaml under it whose BUILDER_IMAGE or
#          builder-image param has a default that is not pinned yet (no @sha256:). Defaults that
#          are already pinned -- released versions, immutable -- are left alone and listed.
#   FILE   a YAML file with exactly one such param default; rewritten even if already pinned.
#
# Rewrites only the `default:` line of those params (in place; other bytes unchanged), checks that
# exactly one line of each file changed and holds the new default, and writes all files or none.
# Exit 0 on success (also when everything already has that value), 1 on a bad argument, a file it
# cannot rewrite or nothing to pin, with a message naming the problem.
set -euo pipefail

usage="usage: $0 IMAGE@sha256:<64 lower-case hex> [FILE|DIR ...]"
if [ "$#" -lt 1 ]; then
  echo "$usage" >&2
  exit 1
fi
image=$1
shift
repo_root=$(cd "$(dirname "$0")/.." && pwd)
if [ "$#" -eq 0 ]; then
  set -- "$repo_root/tekton"
fi

# name[:tag]@sha256:<hex>, name without whitespace, quotes or a second '@'.
if ! printf '%s' "$image" | grep -Eq '^[a-z0-9][a-z0-9._/:-]*[a-z0-9](:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?@sha256:[0-9a-f]{64}$'; then
  echo "pin-builder-image: '$image' is not IMAGE@sha256:<64 lower-case hex digits>" \
    "(e.g. ghcr.io/org/executor:0.2.0@sha256:\$(skopeo inspect --raw docker://ghcr.io/org/executor:0.2.0 | sha256sum | cut -d' ' -f1))" >&2
  exit 1
fi

# Inside a params list, the item `- name: BUILDER_IMAGE` (or builder-image) runs until the next
# `- ` item at the same indentation (or a line indented less). mode=get prints the value of its
# `default:` line(s); mode=set replaces them keeping the indent and exits 3 unless exactly one
# changed. Items without a default (a Pipeline task's or a PipelineRun's `value:`) are skipped.
# shellcheck disable=SC2016
awk_prog='
  function indent(s) { match(s, /^ */); return RLENGTH }
  {
    if (in_param && ($0 ~ /^ *- / && indent($0) <= item_indent || $0 ~ /^ *[^ #-]/ && indent($0) < item_indent)) {
      in_param = 0
    }
    if ($0 ~ /^ *- name: *"?(BUILDER_IMAGE|builder-image)"? *$/) {
      in_param = 1; item_indent = indent($0)
      if (mode == "set") print
      next
    }
    if (in_param && $0 ~ /^ *default:/) {
      match($0, /^ *default:/)
      head = substr($0, 1, RLENGTH)
      cur = substr($0, RLENGTH + 1)
      gsub(/^ +| +$/, "", cur); gsub(/^"|"$/, "", cur)
      found++
      in_param = 0
      if (mode == "get") { print cur; next }
      print head " " img
      next
    }
    if (mode == "set") print
  }
  END { if (mode == "set" && found != 1) exit 3 }
'

# The files to rewrite: FILE arguments as given, DIR arguments expanded to their unpinned copies.
targets=()
skipped=()
for arg in "$@"; do
  if [ -d "$arg" ]; then
    while IFS= read -r f; do
      defaults=$(awk -v mode=get "$awk_prog" "$f")
      [ -n "$defaults" ] || continue
      if [ "$(printf '%s\n' "$defaults" | wc -l)" -ne 1 ]; then
        echo "pin-builder-image: $f: more than one BUILDER_IMAGE/builder-image default; pin it by naming the file" >&2
        exit 1
      fi
      case $defaults in
        "$image") targets+=("$f") ;;                 # reported as already pinned below
        *@sha256:*) skipped+=("$f ($defaults)") ;;   # a released version: immutable
        *) targets+=("$f") ;;
      esac
    done < <(find "$arg" -type f \( -name '*.yaml' -o -name '*.yml' \) | LC_ALL=C sort)
  elif [ -f "$arg" ]; then
    targets+=("$arg")
  else
    echo "pin-builder-image: $arg: no such file or directory" >&2
    exit 1
  fi
done
for s in ${skipped[@]+"${skipped[@]}"}; do
  echo "pin-builder-image: leaving $s alone: already pinned (a released version); name the file to re-pin it"
done
if [ "${#targets[@]}" -eq 0 ]; then
  echo "pin-builder-image: found no unpinned BUILDER_IMAGE/builder-image default in: $*" >&2
  exit 1
fi

# Rewrite every target into a temp file beside it and check it; move them all only if all are fine.
tmps=()
cleanup() { for t in ${tmps[@]+"${tmps[@]}"}; do rm -f "$t"; done; }
trap cleanup EXIT
changed=()
unchanged=()
for f in "${targets[@]}"; do
  tmp=$(mktemp "$f.XXXXXX")
  tmps+=("$tmp")
  awk -v mode=set -v img="$image" "$awk_prog" "$f" > "$tmp" || {
    echo "pin-builder-image: $f: found no single BUILDER_IMAGE/builder-image param with a default: line to rewrite" >&2
    exit 1
  }
  diff_lines=$(diff "$f" "$tmp" | grep -c '^>' || true)
  if [ "$diff_lines" -gt 1 ]; then
    echo "pin-builder-image: refusing: the rewrite would change $diff_lines lines of $f" >&2
    exit 1
  fi
  if ! grep -Fq "default: $image" "$tmp"; then
    echo "pin-builder-image: internal error: the new default is not in the rewritten $f" >&2
    exit 1
  fi
  chmod --reference="$f" "$tmp"
  if [ "$diff_lines" -eq 0 ]; then unchanged+=("$f"); else changed+=("$f"); fi
done
i=0
for f in "${targets[@]}"; do
  mv "${tmps[$i]}" "$f"
  i=$((i + 1))
done
tmps=()
trap - EXIT
for f in ${unchanged[@]+"${unchanged[@]}"}; do
  echo "pin-builder-image: $f already has the executor image default $image"
done
for f in ${changed[@]+"${changed[@]}"}; do
  echo "pin-builder-image: $f: executor image default is now $image"
done
