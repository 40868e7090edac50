#!/usr/bin/env bash
# Independent IEEE 2030.5 clients as real peers of a freshly started GridShare (`gridshare serve` on free
# loopback ports, mutual TLS with a development PKI), as a device and as an aggregator.
#
#   tests/interop/run.sh            every peer (today: aio2030dot5)
#
# Each peer lives in its own virtual environment under var/interop/ (GRIDSHARE_INTEROP_HOME), made on
# first use from PyPI and reused; none is a GridShare dependency. aio2030dot5 needs Python >= 3.12
# (python3.12/3.13 on PATH, PYTHON312=/path, or pyenv's). Everything started here is stopped by PID on
# exit; the server's log is kept in the results directory. The last line is `N passed, M failed`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
AIO_VERSION="0.4.0"

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
aio_venv="$home/aio2030dot5-venv"
if ! "$aio_venv/bin/python" -c "import aio2030dot5, sys; sys.exit(aio2030dot5.__version__ != '$AIO_VERSION')" \
  2>/dev/null; then
  echo "interop: creating $aio_venv (aio2030dot5 $AIO_VERSION)"
  rm -rf "$aio_venv"
  "$py312" -m venv "$aio_venv"
  "$aio_venv/bin/pip" install -q --disable-pip-version-check "aio2030dot5==$AIO_VERSION"
fi
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
"$gs" certs init "$pki" --devices 2 --aggregators 1 >"$results/certs.txt"
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

echo "interop: aio2030dot5 $AIO_VERSION against GridShare on 127.0.0.1:$dev_port; results in $results"
set +e
"$aio_venv/bin/python" "$here/aio2030dot5_peer.py" 127.0.0.1 "$dev_port" "$pki" | tee "$results/aio2030dot5.log"
status=${PIPESTATUS[0]}
set -e
exit "$status"
