#!/usr/bin/env bash
# Catalog test harness hook (tektoncd/catalog test/e2e-common.sh): give the Task a
# registry sidecar so the test pushes to localhost:5000 without any credentials.
add_sidecar_registry "${TMPF}"
