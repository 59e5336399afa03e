#!/usr/bin/env bash
# Installs everything into .venv (first run) and runs the whole test suite twice: on the
# embedded SQLite store, then on PostgreSQL (every test's log a fresh schema of a throw-away
# server started by the tests; tests/conftest.py). Arguments go to both pytest runs.
#   DATAENGINE_TEST_STORE=sqlite|postgresql  run one pass only
set -euo pipefail
source "$(dirname "$0")/env.sh" "test,training,postgres"
cd "$ROOT"
export HF_HUB_OFFLINE=1
stores="${DATAENGINE_TEST_STORE:-sqlite postgresql}"
if [ -z "${DATAENGINE_TEST_STORE:-}" ] && ! python -c 'import sys; sys.path.insert(0, "tests"); import pg_fixture; sys.exit(1 if pg_fixture.available() else 0)'; then
  echo "warning: no PostgreSQL here ($(python -c 'import sys; sys.path.insert(0, "tests"); import pg_fixture; print(pg_fixture.available())')); the PostgreSQL pass is skipped" >&2
  stores=sqlite
fi
status=0
for store in $stores; do
  echo "=== test pass: store $store ==="
  DATAENGINE_TEST_STORE="$store" python -m pytest --store "$store" "$@" || status=$?
done
exit "$status"
