#!/usr/bin/env python3
"""Render the nginx configuration for GridShare from the templates beside this file (stdlib only).

    python3 deploy/nginx/render.py --out /etc/nginx/conf.d \\
        --listen 0.0.0.0:8443 --server-name gridshare.example.net \\
        --tls-cert /etc/gridshare/tls/server.pem --tls-key /etc/gridshare/tls/server.key \\
        --client-ca /etc/gridshare/tls/serca.pem \\
        --upstream 10.0.0.11:8080 --upstream 10.0.0.12:8080

writes OUT/gridshare.conf (an http{} include). With --standalone it also writes OUT/nginx.conf, which
keeps every path under nginx's prefix and runs in the foreground:

    nginx -p OUT -c OUT/nginx.conf -e OUT/logs/error.log

Only `${NAME}` placeholders with upper-case names are replaced (nginx's own `$variables` stay); a
placeholder left without a value stops the rendering with its name. Values can also come from the
environment under the same names (GRIDSHARE_LISTEN, ...), as the official nginx image's envsubst does.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_TEMPLATE = HERE / "gridshare.conf.template"
MAIN_TEMPLATE = HERE / "nginx.conf.template"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
#: GridShare's proxy_cert_header default (core/settings.py).
DEFAULT_CERT_HEADER = "X-Client-Cert"


def render(template: str, values: dict[str, str]) -> str:
    """Fill `${NAME}` placeholders; every one must have a value."""
    missing = sorted({m for m in PLACEHOLDER.findall(template) if m not in values})
    if missing:
        raise ValueError(f"no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def upstream_lines(upstreams: list[str]) -> str:
    """`server host:port ...;` per GridShare serving process; a failed one rests 5 s before a retry."""
    lines = []
    for up in upstreams:
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}", up):
            raise ValueError(f"upstream {up!r} is not host:port")
        lines.append(f"server {up} max_fails=1 fail_timeout=5s;")
    return "\n    ".join(lines)


def _path(value: str, name: str) -> str:
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"{name}: {path} is not a file")
    return str(path)


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to write gridshare.conf into")
    parser.add_argument("--listen", default=env("GRIDSHARE_LISTEN", "8443"), help="[address:]port")
    parser.add_argument("--server-name", default=env("GRIDSHARE_SERVER_NAME", "_"))
    parser.add_argument("--tls-cert", default=env("GRIDSHARE_TLS_CERT"), help="server chain (PEM)")
    parser.add_argument("--tls-key", default=env("GRIDSHARE_TLS_KEY"), help="server key (PEM)")
    parser.add_argument("--client-ca", default=env("GRIDSHARE_CLIENT_CA"), help="2030.5 trust anchor (PEM)")
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a GridShare serving process (repeat; or GRIDSHARE_UPSTREAMS, comma-separated)",
    )
    parser.add_argument("--cert-header", default=env("GRIDSHARE_CERT_HEADER", DEFAULT_CERT_HEADER))
    parser.add_argument(
        "--access-log", default=env("GRIDSHARE_ACCESS_LOG"), help="[default: OUT/logs/access.log]"
    )
    parser.add_argument("--standalone", action="store_true", help="also write OUT/nginx.conf")
    parser.add_argument("--worker-processes", default="auto", help="with --standalone [default: auto]")
    args = parser.parse_args(argv)

    upstreams = args.upstream or [u.strip() for u in env("GRIDSHARE_UPSTREAMS", "").split(",") if u.strip()]
    try:
        for flag in ("tls_cert", "tls_key", "client_ca"):
            if not getattr(args, flag):
                raise ValueError(f"--{flag.replace('_', '-')} is required")
        if not upstreams:
            raise ValueError("name at least one GridShare serving process with --upstream HOST:PORT")
        if not re.fullmatch(r"[A-Za-z0-9-]+", args.cert_header):
            raise ValueError(f"--cert-header {args.cert_header!r} is not a header name")
        out = args.out.expanduser().resolve()
        values = {
            "GRIDSHARE_LISTEN": args.listen,
            "GRIDSHARE_SERVER_NAME": args.server_name,
            "GRIDSHARE_TLS_CERT": _path(args.tls_cert, "--tls-cert"),
            "GRIDSHARE_TLS_KEY": _path(args.tls_key, "--tls-key"),
            "GRIDSHARE_CLIENT_CA": _path(args.client_ca, "--client-ca"),
            "GRIDSHARE_UPSTREAM_SERVERS": upstream_lines(upstreams),
            "GRIDSHARE_CERT_HEADER": args.cert_header,
            "GRIDSHARE_ACCESS_LOG": args.access_log or str(out / "logs" / "access.log"),
            "NGINX_WORKER_PROCESSES": args.worker_processes,
        }
        site = render(SITE_TEMPLATE.read_text(), values)
        main_conf = render(MAIN_TEMPLATE.read_text(), values) if args.standalone else None
    except ValueError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "gridshare.conf").write_text(site)
    if main_conf is not None:
        (out / "nginx.conf").write_text(main_conf)
        for sub in ("logs", "temp"):
            (out / sub).mkdir(exist_ok=True)
    print(f"wrote {out / 'gridshare.conf'}" + (f" and {out / 'nginx.conf'}" if main_conf else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
