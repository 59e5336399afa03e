#!/usr/bin/env bash
# Installs everything into .venv (first run) and runs the whole test suite.
set -euo pipefail
source "$(dirname "$0")/env.sh" "test,training,postgres"
cd "$ROOT"
export HF_HUB_OFFLINE=1
exec python -m pytest "$@"
