#!/usr/bin/env bash
# Installs the server into .venv (first run) and starts it on the embedded SQLite store.
set -euo pipefail
source "$(dirname "$0")/env.sh" test
cd "$ROOT"
exec dataengine serve "$@"
