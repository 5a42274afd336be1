#!/usr/bin/env bash
# Start Debian's docker-registry (distribution) on a free 127.0.0.1 port.
# Usage: start-registry.sh STATE_DIR   -> prints "127.0.0.1:PORT"; PID in STATE_DIR/registry.pid
set -euo pipefail
state=${1:?usage: start-registry.sh STATE_DIR}
mkdir -p "$state/data"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$state/config.yml" <<YAML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $state/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
YAML
docker-registry serve "$state/config.yml" >"$state/registry.log" 2>&1 &
echo $! > "$state/registry.pid"
for _ in $(seq 1 100); do
  if curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1; then echo "127.0.0.1:$port"; exit 0; fi
  sleep 0.1
done
echo "start-registry: registry did not come up; log:" >&2; cat "$state/registry.log" >&2; exit 1
