#!/usr/bin/env bash
# The main job, end to end on loopback: start Debian's docker-registry, make a busybox base
# image with umoci and push it with skopeo, build examples/hello with `executor`, push it,
# then unpack the pushed image with umoci and run it with runc.
set -euo pipefail
cd "$(dirname "$0")/.."
state=$(mktemp -d /tmp/executor-demo.XXXXXX)
cleanup() { [ -f "$state/reg/registry.pid" ] && kill "$(cat "$state/reg/registry.pid")" 2>/dev/null || true; rm -rf "$state"; }
trap cleanup EXIT

reg=$(scripts/start-registry.sh "$state/reg")
echo "== registry: http://$reg (Debian docker-registry)"
base=$(scripts/make-busybox-image.sh "$reg" busybox:latest | tail -1)
echo "== base image: $base (busybox-static packed with umoci, pushed with skopeo)"

echo "== building examples/hello with executor"
start=$(date +%s.%N)
.venv/bin/executor --context examples/hello --dockerfile Dockerfile \
  --build-arg BASE="$base" --destination "$reg/hello:latest" \
  --insecure-registry "$reg" --digest-file "$state/digest" --log-format text
end=$(date +%s.%N)
printf '== build + push took %.2fs; digest %s\n' "$(echo "$end - $start" | bc -l 2>/dev/null || python3 -c "print($end-$start)")" "$(cat "$state/digest")"

echo "== skopeo inspect"
skopeo inspect --tls-verify=false "docker://$reg/hello:latest" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps({k: d[k] for k in ("Digest","Architecture","Os","Layers","Env")}, indent=2))'

echo "== umoci unpack + runc run"
skopeo copy -q --src-tls-verify=false "docker://$reg/hello:latest" "oci:$state/layout:hello"
umoci unpack --image "$state/layout:hello" "$state/bundle" >/dev/null
python3 - "$state/bundle/config.json" <<'PY'
import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["process"]["terminal"] = False; json.dump(c, open(p, "w"))
PY
runc run --bundle "$state/bundle" "executor-demo-$$" </dev/null
echo "== demo OK"
