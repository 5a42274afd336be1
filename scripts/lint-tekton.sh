#!/usr/bin/env bash
# Lint the Tekton catalog under tekton/ with @ibm/tekton-lint (pinned in package.json and
# package-lock.json). Installs it into node_modules/ with `npm ci` when missing or stale.
# Usage: scripts/lint-tekton.sh [FILES_OR_GLOBS...]   (default: every YAML under tekton/)
# Extra env: TEKTON_LINT_FORMAT=json|stylish (default stylish). Exit status is tekton-lint's:
# 0 clean, 1 on any error; warnings fail too (--max-warnings 0).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null 2>&1; then
  echo "lint-tekton: npm not found (apt-get install nodejs npm)" >&2
  exit 127
fi

lint=node_modules/.bin/tekton-lint
stamp=node_modules/.lint-tekton-$(sha256sum package-lock.json | cut -c1-16)
if [ ! -x "$lint" ] || [ ! -f "$stamp" ]; then
  npm ci --no-audit --no-fund --loglevel=error >&2
  touch "$stamp"
fi

if [ "$#" -eq 0 ]; then
  set -- 'tekton/**/*.yaml'
fi
exec "$lint" --color=false --format "${TEKTON_LINT_FORMAT:-stylish}" --max-warnings 0 --config tekton "$@"
