# Sourced by the other scripts: a project-local virtual environment with everything installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DATAENGINE_VENV:-$ROOT/.venv}"
EXTRAS="${1:-test}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
STAMP="$VENV/.installed-$EXTRAS"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
  "$VENV/bin/pip" install --disable-pip-version-check -q --upgrade pip >/dev/null
  # torch is pinned in the training extra and resolved in the same pip call (local CPU wheel).
  "$VENV/bin/pip" install --disable-pip-version-check -q -e "$ROOT[$EXTRAS]"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
