#!/usr/bin/env bash
# Install GridShare with its test extras into ./.venv, lint, type-check, and run the default test suite.
# PostgreSQL tests use GRIDSHARE_TEST_PG_URL (default: postgres@127.0.0.1:5432/test) and skip if it is down.
source "$(dirname "$0")/_venv.sh" "test"
cd "$root"
"$venv/bin/ruff" check .
"$venv/bin/mypy"
exec "$venv/bin/pytest" -m "not slow" "$@"
