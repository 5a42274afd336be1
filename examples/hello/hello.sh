#!/bin/sh
cat "$GREETING_FILE"
echo "running as $(id -un) in $(pwd)"
