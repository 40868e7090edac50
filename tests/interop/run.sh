#!/usr/bin/env bash
# Independent IEEE 2030.5 clients as real peers of a freshly started GridShare (`gridshare serve` on free
# loopback ports, mutual TLS with a development PKI), as a device and as an aggregator.
#
#   tests/interop/run.sh                 every peer: aio2030dot5 (metering reader) and py20305 (DER client)
#   tests/interop/run.sh aio2030dot5     only the ones named
#
# Each peer lives in its own virtual environment under var/interop/ (GRIDSHARE_INTEROP_HOME), made on
# first use from PyPI (pinned) and reused; none is a GridShare dependency. aio2030dot5 needs Python >= 3.12
# (python3.12/3.13 on PATH, PYTHON312=/path, or pyenv's). Everything started here is stopped by PID on
# exit; the server's log is kept in the results directory. The last line is `N passed, M failed` over
# every peer's checks.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# peer name -> the pinned package it installs (its checks are in <name>_peer.py beside this script)
declare -A PEERS=([aio2030dot5]="aio2030dot5==0.4.0" [py20305]="py20305==0.16.1")
ORDER=(aio2030dot5 py20305)
if [ $# -gt 0 ]; then
  for name in "$@"; do [ -n "${PEERS[$name]:-}" ] || { echo "interop: unknown peer $name" >&2; exit 64; }; done
  ORDER=("$@")
fi

die() { echo "interop: $*" >&2; exit 1; }

find_py312plus() {
  local c
  for c in "${PYTHON312:-}" python3.12 python3.13 /root/.pyenv/versions/3.12*/bin/python \
    /root/.pyenv/versions/3.13*/bin/python /usr/bin/python3.12 /usr/local/bin/python3.12; do
    [ -n "$c" ] || continue
    if "$c" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 12))' >/dev/null 2>&1; then
      command -v "$c" 2>/dev/null || echo "$c"
      return 0
    fi
  done
  return 1
}
py312="$(find_py312plus)" || die "no Python >= 3.12 found (aio2030dot5 needs it): set PYTHON312=/path"

home="${GRIDSHARE_INTEROP_HOME:-$root/var/interop}"
mkdir -p "$home"
for name in "${ORDER[@]}"; do
  venv="$home/$name-venv" spec="${PEERS[$name]}"
  if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$spec" ]; then
    echo "interop: creating $venv ($spec)"
    rm -rf "$venv"
    "$py312" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$spec"
    echo "$spec" >"$venv/.installed"
  fi
done
# GridShare itself, in the project's venv (as scripts/serve.sh makes it)
# shellcheck source=/dev/null
if ! (source "$root/scripts/_venv.sh" "") >"$home/gridshare-venv.log" 2>&1; then
  cat "$home/gridshare-venv.log" >&2
  die "could not prepare GridShare's .venv (see above)"
fi
gs="$root/.venv/bin/gridshare"
gspy="$root/.venv/bin/python"

results="$home/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$results"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

read -r dev_port op_port < <("$gspy" -c '
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')
export GRIDSHARE_DATA_DIR="$results/data" GRIDSHARE_HOST=127.0.0.1 GRIDSHARE_PORT="$dev_port" \
  GRIDSHARE_OPERATOR_HOST=127.0.0.1 GRIDSHARE_OPERATOR_PORT="$op_port" GRIDSHARE_DEMO_NETWORK=false
unset GRIDSHARE_CONFIG GRIDSHARE_DATABASE_URL
cd "$results"  # no stray ./gridshare.toml
pki="$results/data/pki"
"$gs" certs init "$pki" --devices 3 --aggregators 1 >"$results/certs.txt"
"$gs" serve >"$results/gridshare.log" 2>&1 &
pids+=($!)
ready=""
for _ in $(seq 1 150); do
  if "$gspy" - "$dev_port" "$pki" <<'PY' 2>/dev/null; then
import ssl, sys, urllib.request
port, pki = sys.argv[1:3]
ctx = ssl.create_default_context(cafile=f"{pki}/ca.pem")
ctx.load_cert_chain(f"{pki}/device-1.pem", f"{pki}/device-1.key")
urllib.request.urlopen(f"https://127.0.0.1:{port}/tm", context=ctx, timeout=2).read()
PY
    ready=1; break
  fi
  kill -0 "${pids[0]}" 2>/dev/null || die "gridshare serve exited at start; see $results/gridshare.log"
  sleep 0.2
done
[ -n "$ready" ] || die "GridShare did not answer on 127.0.0.1:$dev_port; see $results/gridshare.log"

passed=0 failed=0
for name in "${ORDER[@]}"; do
  echo "interop: ${PEERS[$name]} against GridShare on 127.0.0.1:$dev_port; results in $results"
  set +e
  "$home/$name-venv/bin/python" "$here/${name}_peer.py" 127.0.0.1 "$dev_port" "$pki" | tee "$results/$name.log"
  set -e
  last="$(tail -n 1 "$results/$name.log")"
  if [[ "$last" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    passed=$((passed + BASH_REMATCH[1])) failed=$((failed + BASH_REMATCH[2]))
  else
    echo "interop: $name ended without its summary line" >&2
    failed=$((failed + 1))
  fi
done
echo "interop: server log $results/gridshare.log"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
