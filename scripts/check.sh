#!/usr/bin/env bash
# Static checks: ruff format and lint, mypy (domain, projections, api), import contracts.
set -euo pipefail
source "$(dirname "$0")/env.sh" test
cd "$ROOT"
ruff format --check .
ruff check .
mypy
lint-imports --no-cache
