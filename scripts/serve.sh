#!/usr/bin/env bash
# Install GridShare into ./.venv and serve on the embedded defaults (SQLite, dev PKI, loopback).
source "$(dirname "$0")/_venv.sh" ""
exec "$venv/bin/gridshare" serve "$@"
