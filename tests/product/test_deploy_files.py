"""deploy/compose.yaml and the Dockerfile describe a deployment that would actually work.

There is no Docker engine here, so the compose file is checked against the Compose Specification
schema (the copy check-jsonschema ships) and for the promises of the production shape: N serving
processes and exactly one publisher/notifier, nginx's template fully filled in, the certificate header
trusted from nginx only, and GridShare's own settings valid as written.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gridshare.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "deploy" / "compose.yaml"
TEMPLATE = REPO / "deploy" / "nginx" / "gridshare.conf.template"
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
#: What an operator would export before `docker compose up` (compose interpolates ${...} from it).
SAMPLE_ENV = {"POSTGRES_PASSWORD": "secret", "GRIDSHARE_SERVER_NAME": "gridshare.example.net"}


def _interpolate(value: Any) -> Any:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, from SAMPLE_ENV."""
    if isinstance(value, dict):
        return {k: _interpolate(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v) for v in value]
    if not isinstance(value, str):
        return value

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3) or ""
        if name in SAMPLE_ENV:
            return SAMPLE_ENV[name]
        if op == ":?":
            raise AssertionError(f"compose needs {name}: {arg}")
        return arg

    return re.sub(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:-|:\?)([^}]*))?\}", one, value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(_interpolate(yaml.safe_load(COMPOSE.read_text())))


def _check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    done = _check_schema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "compose.yaml"  # the check has teeth: a misspelt key and a bad replica count
    for good, bad in (("    expose:\n", "    exposes:\n"), ("replicas: 1", "replicas: [1]")):
        broken.write_text(COMPOSE.read_text().replace(good, bad, 1))
        assert _check_schema(broken).returncode != 0, bad


def _roles(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command[command.index("--roles") + 1].split(",") if "--roles" in command else []


def _gridshare_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose["services"].items() if (s.get("command") or [None])[0] == "serve"}


def test_n_serving_processes_and_exactly_one_publisher_and_notifier(compose: dict[str, Any]) -> None:
    services = _gridshare_services(compose)
    serving = {n: s for n, s in services.items() if "serve" in _roles(s)}
    publishing = {n: s for n, s in services.items() if {"publish", "notify"} & set(_roles(s))}
    assert serving and all(_roles(s) == ["serve"] for s in serving.values())  # stateless: nothing else
    [(name, publisher)] = publishing.items()
    assert sorted(_roles(publisher)) == ["notify", "operator", "publish"]
    assert publisher["deploy"]["replicas"] == 1
    # the operator API is plain HTTP: published on the host's loopback only, never on the device port
    assert all(p.startswith("127.0.0.1:") for p in publisher.get("ports", [])), name
    for s in services.values():
        assert s["image"] == "gridshare:latest" and s["build"]["dockerfile"] == "Dockerfile"
        assert (COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"]).is_file()


def test_gridshare_settings_in_compose_are_valid(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray gridshare.toml
    for name, service in _gridshare_services(compose).items():
        for key in [k for k in os.environ if k.startswith("GRIDSHARE_")]:
            monkeypatch.delenv(key)
        for key, value in service["environment"].items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()
        assert settings.behind_proxy and settings.database_url.startswith("postgresql"), name
        assert not settings.dev_pki, name  # production: real certificates live at nginx


def test_only_nginx_may_forward_the_certificate_and_it_fills_every_placeholder(
    compose: dict[str, Any],
) -> None:
    nginx = compose["services"]["nginx"]
    env = nginx["environment"]
    placeholders = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", TEMPLATE.read_text()))
    assert placeholders - {"NGINX_WORKER_PROCESSES"} <= set(env), "the official image would leave ${...}"
    mounted = {v.split(":")[0]: v.split(":")[1] for v in nginx["volumes"]}
    assert (COMPOSE.parent / "nginx" / "gridshare.conf.template").resolve() == TEMPLATE
    assert mounted["./nginx/gridshare.conf.template"].startswith("/etc/nginx/templates/")
    nginx_ip = nginx["networks"]["backend"]["ipv4_address"]
    for name, service in _gridshare_services(compose).items():
        s_env = service["environment"]
        assert s_env["GRIDSHARE_TRUSTED_PROXIES"] == nginx_ip, name  # nobody else on the network
        assert s_env["GRIDSHARE_PROXY_CERT_HEADER"] == env["GRIDSHARE_CERT_HEADER"], name
    # nginx balances over the serving service, on the port it listens on
    upstream = re.fullmatch(r"server ([\w-]+):(\d+)[^;]*;", env["GRIDSHARE_UPSTREAM_SERVERS"])
    assert upstream is not None
    target = compose["services"][upstream.group(1)]
    assert _roles(target) == ["serve"]
    assert target["environment"]["GRIDSHARE_PORT"] == upstream.group(2)
    subnet = compose["networks"]["backend"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(nginx_ip) in ipaddress.ip_network(subnet)


def test_dask_services_are_described_for_the_coming_distributed_work(compose: dict[str, Any]) -> None:
    scheduler, worker = compose["services"]["dask-scheduler"], compose["services"]["dask-worker"]
    assert scheduler["entrypoint"] == worker["entrypoint"] == ["dask"]
    port = scheduler["command"][scheduler["command"].index("--port") + 1]
    assert worker["command"][:2] == ["worker", f"tcp://dask-scheduler:{port}"]
    assert scheduler["profiles"] == worker["profiles"] == ["dask"]  # off until GridShare submits work


def test_dockerfile_copies_every_room_the_package_links_to() -> None:
    """gridshare/<room> are symbolic links; a room missing from the image breaks `pip install .`."""
    rooms = {p.name for p in (REPO / "gridshare").iterdir() if p.is_symlink()}
    copied = set(re.findall(r"^COPY (\S+) \./\1\s*$", (REPO / "Dockerfile").read_text(), flags=re.M))
    assert rooms and rooms <= copied, f"not copied into the image: {sorted(rooms - copied)}"
    assert "gridshare" in copied
