#!/usr/bin/env bash
# Side-by-side build benchmark: executor vs buildah (chroot, vfs) vs Docker's classic builder.
# Usage: scripts/bench.sh [benchmarks/run.py options]   (e.g. --runs 5 --cases tiny,biglayer)
# Env: BENCH_RUNS (default 3), BENCH_CASES, BENCH_BUILDERS, BENCH_MODES, BENCH_EXECUTOR_ARGS.
# Installs docker.io from Debian when dockerd is missing (the daemon runs only during the
# benchmark, on a private socket and data root). Results: benchmarks/results/ (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "bench: run as root (buildah/docker/RUN isolation need it)" >&2; exit 1; fi
if ! command -v dockerd >/dev/null 2>&1 && [ "${BENCH_NO_DOCKER_INSTALL:-}" != 1 ]; then
  echo "bench: installing docker.io (dockerd) from Debian" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends docker.io >/dev/null \
    || echo "bench: could not install docker.io; the table will say so" >&2
fi
for tool in buildah skopeo docker-registry umoci /usr/bin/time; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
# Byte-compile the executor as pip does when it installs the image (Dockerfile.executor): with
# PYTHONDONTWRITEBYTECODE set (CI shells, the image itself) an editable checkout would otherwise
# recompile every changed module on every timed run (up to ~0.2 s of each build).
.venv/bin/python -m compileall -q executor >/dev/null
exec .venv/bin/python benchmarks/run.py "$@"
