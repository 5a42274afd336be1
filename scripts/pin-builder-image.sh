#!/usr/bin/env bash
# Pin the kaniko-build Task's BUILDER_IMAGE default to an image digest (release step; see
# tekton/README.md "Images and releases").
#
# Usage: scripts/pin-builder-image.sh IMAGE@sha256:<64 hex> [TASK_YAML]
#   IMAGE    the executor image, with or without a tag: ghcr.io/org/executor:0.2.0@sha256:...
#   TASK_YAML  default tekton/tasks/kaniko-build/0.1/kaniko-build.yaml (relative to the repo root)
#
# Rewrites only the `default:` line of the BUILDER_IMAGE param (in place; other bytes unchanged)
# and checks that at most one line changed and that it holds the new default.
# Exit 0 on success (also when already pinned to that value), 1 on a bad argument or a file it
# cannot rewrite, with a message naming the problem.
set -euo pipefail

usage="usage: $0 IMAGE@sha256:<64 lower-case hex> [TASK_YAML]"
if [ "$#" -lt 1 ] || [ "$#" -gt 2 ]; then
  echo "$usage" >&2
  exit 1
fi
image=$1
repo_root=$(cd "$(dirname "$0")/.." && pwd)
task=${2:-$repo_root/tekton/tasks/kaniko-build/0.1/kaniko-build.yaml}

# name[:tag]@sha256:<hex>, name without whitespace, quotes or a second '@'.
if ! printf '%s' "$image" | grep -Eq '^[a-z0-9][a-z0-9._/:-]*[a-z0-9](:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?@sha256:[0-9a-f]{64}$'; then
  echo "pin-builder-image: '$image' is not IMAGE@sha256:<64 lower-case hex digits>" \
    "(e.g. ghcr.io/org/executor:0.2.0@sha256:\$(skopeo inspect --raw docker://ghcr.io/org/executor:0.2.0 | sha256sum | cut -d' ' -f1))" >&2
  exit 1
fi
if [ ! -f "$task" ]; then
  echo "pin-builder-image: $task: no such file" >&2
  exit 1
fi

# Inside `params:`, the list item `- name: BUILDER_IMAGE` runs until the next `- name:` at the
# same indentation (or a line indented less); its `default:` line is replaced keeping its indent.
tmp=$(mktemp "$task.XXXXXX")
trap 'rm -f "$tmp"' EXIT
awk -v img="$image" '
  function indent(s) { match(s, /^ */); return RLENGTH }
  {
    if (in_param && ($0 ~ /^ *- / && indent($0) <= item_indent || $0 ~ /^ *[^ #-]/ && indent($0) < item_indent)) {
      in_param = 0
    }
    if ($0 ~ /^ *- name: *"?BUILDER_IMAGE"? *$/) { in_param = 1; item_indent = indent($0); print; next }
    if (in_param && $0 ~ /^ *default:/) {
      match($0, /^ *default:/)
      print substr($0, 1, RLENGTH) " " img
      changed++
      in_param = 0
      next
    }
    print
  }
  END { if (changed != 1) exit 3 }
' "$task" > "$tmp" || {
  echo "pin-builder-image: $task: found no single BUILDER_IMAGE param with a default: line to rewrite" >&2
  exit 1
}

diff_lines=$(diff "$task" "$tmp" | grep -c '^>' || true)
if [ "$diff_lines" -gt 1 ]; then
  echo "pin-builder-image: refusing: the rewrite would change $diff_lines lines of $task" >&2
  exit 1
fi
if ! grep -Fq "default: $image" "$tmp"; then
  echo "pin-builder-image: internal error: the new default is not in the rewritten file" >&2
  exit 1
fi
chmod --reference="$task" "$tmp"
mv "$tmp" "$task"
trap - EXIT
if [ "$diff_lines" -eq 0 ]; then
  echo "pin-builder-image: $task already has BUILDER_IMAGE default $image"
else
  echo "pin-builder-image: $task: BUILDER_IMAGE default is now $image"
fi
