"""Give a running bsgip/envoy the same fleet and data the conversation benchmark gives GridShare.

The reference CSIP-AUS server (https://github.com/bsgip/envoy) is started by hand, outside this
repository (docs/bench-conversation.md says how), with `ALLOW_DEVICE_REGISTRATION=true` behind an nginx
that terminates mutual TLS and forwards the client certificate. This script then, over envoy's own
public interfaces only:

1. makes a dev PKI (`gridshare.certs.devpki`) of `--devices` devices and an nginx front config for it;
2. (`--register`) registers every device through the device port (POST /edev with its own certificate,
   as a CSIP-AUS device registers itself);
3. through envoy's admin API: the same advertised rates as GridShare's defaults (DeviceCapability
   300 s, FSA 300 s, DERProgramList 60 s, mirror post rate 60 s), one DOE control group with a default
   and `--controls` consecutive 5-minute DOE controls per site from now.

    .venv/bin/python -m bench.envoy_setup --out /work/scratch/envoy-fleet --devices 50 --pki
    .venv/bin/python -m bench.envoy_setup --out /work/scratch/envoy-fleet --register --device-url \
        https://127.0.0.1:18943 --admin-url http://127.0.0.1:18911 --admin-auth admin:benchpass
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import ssl
import time
from pathlib import Path

import httpx

from gridshare.certs.devpki import create_dev_pki, load_dev_pki
from gridshare.sim import wire

#: GridShare's advertised defaults (core/settings.py DEFAULT_POLL_RATES_S, mup_post_rate_s).
RATES = {
    "dcap_pollrate_seconds": 300,
    "edevl_pollrate_seconds": 300,
    "fsal_pollrate_seconds": 300,
    "derpl_pollrate_seconds": 60,
    "mup_postrate_seconds": 60,
}


def front_conf(out: Path, listen_port: int, envoy_port: int, workers: int) -> Path:
    """nginx terminating mutual TLS with the dev PKI and passing the client certificate to envoy."""
    pki = load_dev_pki(out / "pki")
    conf = out / "nginx.conf"
    temp = out / "nginx-temp"
    temp.mkdir(parents=True, exist_ok=True)
    conf.write_text(
        f"""worker_processes {workers};
user root;
daemon off;
pid {out}/nginx.pid;
error_log {out}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream envoy {{ server 127.0.0.1:{envoy_port}; keepalive 64; keepalive_requests 10000000; }}
    server {{
        listen 127.0.0.1:{listen_port} ssl;
        ssl_certificate {pki.server_cert_path};
        ssl_certificate_key {pki.server_key_path};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_client_certificate {pki.ca_path};
        ssl_verify_client on;
        ssl_verify_depth 2;
        location / {{
            proxy_pass http://envoy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header x-forwarded-client-cert $ssl_client_escaped_cert;
        }}
    }}
}}
"""
    )
    return conf


def register(out: Path, device_url: str) -> dict[str, int]:
    """Each device registers its own EndDevice; returns lFDI -> envoy site id."""
    pki = load_dev_pki(out / "pki")
    sites: dict[str, int] = {}
    for dev in pki.devices:
        tls = ssl.create_default_context(cafile=str(pki.ca_path))
        tls.load_cert_chain(str(dev.cert_path), str(dev.key_path))
        with httpx.Client(base_url=device_url, verify=tls, timeout=30) as client:
            body = wire.end_device_body(dev.sfdi, dev.lfdi, int(time.time()))
            answer = client.post("/edev", content=body, headers={"Content-Type": wire.MEDIA_TYPE})
            location = answer.headers.get("location")
            if answer.status_code == 409 and not location:  # envoy names no EndDevice on a conflict
                listed = wire.end_devices(wire.parse(client.get("/edev").content))
                location = next((d.href for d in listed if d.lfdi == dev.lfdi.upper()), None)
            if answer.status_code not in (201, 409) or not location:
                raise SystemExit(f"registering {dev.lfdi}: HTTP {answer.status_code} {answer.text[:200]}")
            sites[dev.lfdi] = int(location.rstrip("/").rsplit("/", 1)[1])
    (out / "sites.json").write_text(json.dumps(sites))
    return sites


def seed_controls(sites: dict[str, int], admin_url: str, auth: tuple[str, str], controls: int) -> None:
    with httpx.Client(base_url=admin_url, auth=auth, timeout=120) as admin:
        admin.post("/server_config/run_time", json=RATES).raise_for_status()
        groups = admin.get("/site_control_group").json()["site_control_groups"]
        group = next((g["site_control_group_id"] for g in groups if g["description"] == "DOE"), None)
        if group is None:
            made = admin.post("/site_control_group", json={"description": "DOE", "primacy": 1, "fsa_id": 1})
            made.raise_for_status()
            group = int(made.headers["location"].rstrip("/").rsplit("/", 1)[1])
        admin.post(
            f"/site_control_group/{group}/default",
            json={
                "export_limit_watts": {"value": 1500},
                "import_limit_watts": {"value": 10000},
                "generation_limit_watts": None,
                "load_limit_watts": None,
                "ramp_rate_percent_per_second": None,
            },
        ).raise_for_status()
        start = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start -= dt.timedelta(seconds=start.timestamp() % 300)
        body = [
            {
                "site_id": site,
                "calculation_log_id": None,
                "duration_seconds": 300,
                "start_time": (start + dt.timedelta(seconds=300 * i)).isoformat(),
                "export_limit_watts": 5000 - 100 * i,
                "import_limit_watts": 10000,
            }
            for site in sites.values()
            for i in range(controls)
        ]
        admin.post(f"/site_control_group/{group}/controls", json=body).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--controls", type=int, default=10)
    parser.add_argument("--pki", action="store_true", help="make the dev PKI and the nginx front config")
    parser.add_argument("--listen-port", type=int, default=18943)
    parser.add_argument("--envoy-port", type=int, default=18910)
    parser.add_argument("--front-workers", type=int, default=1)
    parser.add_argument("--register", action="store_true", help="register the devices and seed their DOEs")
    parser.add_argument("--device-url", default="https://127.0.0.1:18943")
    parser.add_argument("--admin-url", default="http://127.0.0.1:18911")
    parser.add_argument("--admin-auth", default="admin:benchpass")
    args = parser.parse_args()
    if args.pki:
        args.out.mkdir(parents=True, exist_ok=True)
        create_dev_pki(args.out / "pki", devices=args.devices, aggregators=0)
        print(front_conf(args.out, args.listen_port, args.envoy_port, args.front_workers))
    if args.register:
        sites = register(args.out, args.device_url)
        user, _, password = args.admin_auth.partition(":")
        seed_controls(sites, args.admin_url, (user, password), args.controls)
        print(f"{len(sites)} devices registered, {args.controls} DOE controls each")


if __name__ == "__main__":
    main()
