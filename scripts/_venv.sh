# Sourced by the scripts: find Python >= 3.11 and make ./.venv with GridShare installed (extras in $1).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-python3}"
if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "GridShare needs Python >= 3.11; '$py' is $("$py" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
venv="$root/.venv"
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
extras="${1:-}"
stamp="$venv/.installed${extras:+-$extras}"
if [ ! -f "$stamp" ] || [ "$root/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/pip" install -q --disable-pip-version-check -e "$root${extras:+[$extras]}"
  touch "$stamp"
fi
