"""The wheel is what users and the Docker image install: build it, install it alone, serve from it.

An editable install reads the source tree, so a room left out of the package list, a migration or an
example network left out of the package data would pass every other test and still break
`pip install gridshare`, and the image built from the wheel (Dockerfile). Here the wheel is built
from a copy of the tree, installed into a fresh virtual environment that borrows only the
dependencies of the test environment (never its editable GridShare), and `gridshare serve` from that
environment must answer /dcap to a device certificate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
#: What a copy of the tree for building leaves out (local state, caches, other builds).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis",
    ".benchmarks", "gridshare-data", "tests", "bench", "docs",
)  # fmt: skip


def _rooms() -> list[str]:
    """The rooms: every `gridshare/<room>` symbolic link to a top-level folder."""
    return sorted(p.name for p in (ROOT / "gridshare").iterdir() if p.is_symlink())


def _expected_files() -> set[str]:
    """Every file of every room, as wheel paths (`gridshare/<room>/...`): code, migrations, example
    networks, the console's templates and static files. A data file the package-data patterns miss
    shows up here."""
    wanted = {"gridshare/__init__.py", "gridshare/cli.py"}
    for room in _rooms():
        for path in (ROOT / room).rglob("*"):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                continue
            wanted.add(f"gridshare/{path.relative_to(ROOT).as_posix()}")
    return wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline from a copy of the source tree (the tree itself stays untouched)."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_SOURCE)
    out = work / "dist"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            ".",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("gridshare-*.whl")
    return built


def test_the_wheel_holds_every_room_the_migrations_and_the_example_networks(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    missing = sorted(_expected_files() - names)
    assert not missing, f"left out of the wheel: {missing}"
    assert any(n.startswith("gridshare/store/migrations/versions/0001") for n in names)
    assert "gridshare/grid/examples/demo-feeder.yaml" in names
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    strays = sorted({n.split("/")[0] for n in names} - {"gridshare", dist_info})
    assert not strays, f"top-level names besides gridshare would collide in a planner's environment: {strays}"


def test_the_docker_image_runs_the_wheel_and_nothing_else_from_the_tree() -> None:
    """No Docker engine here: check the Dockerfile's shape. The run stage may take only the built wheel.

    The image once copied room folders one by one and left two out, so it could not start.
    """
    stages = (ROOT / "Dockerfile").read_text().split("\nFROM ")
    assert len(stages) == 3, "a build stage and a run stage"
    build, run = stages[1], stages[2]
    assert "pip wheel" in build
    copies = [line for line in run.splitlines() if line.startswith("COPY")]
    assert copies == ["COPY --from=build /wheels /wheels"], copies
    assert "pip install --no-cache-dir /wheels/gridshare-*.whl" in run
    assert "EXPOSE 8443 8080" in run


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; dependencies come from the test venv's site-packages.

    A `.pth` line adds that folder to sys.path after the venv's own, and Python does not run the
    `.pth` files of a folder added that way, so the editable install's import hook stays out.
    """
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.strip()  # fmt: skip
    (Path(purelib) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
         str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRIDSHARE_", "PYTHON"))}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_every_module_imports_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    script = (
        "import importlib, pkgutil, gridshare\n"
        "names = [m.name for m in pkgutil.walk_packages(gridshare.__path__, 'gridshare.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(gridshare.__file__, len(names))\n"
    )
    result = subprocess.run(
        [str(installed / "bin" / "python"), "-c", script],
        cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    where, count = result.stdout.split()
    assert Path(where).is_relative_to(installed), f"imported {where}, not the installed wheel"
    assert int(count) > 100


@pytest.fixture
def served(installed: Path, tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """`gridshare serve` from the fresh venv, in an empty folder, on free ports."""
    port, data, log = free_port(), tmp_path / "data", tmp_path / "serve.log"
    env = _clean_env() | {"GRIDSHARE_OPERATOR_PORT": str(free_port())}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(installed / "bin" / "gridshare"), "serve", "--port", str(port), "--data-dir", str(data)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port, data, log
        assert proc.poll() is None, log.read_text()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)


def test_gridshare_serve_from_the_wheel_answers_dcap(served: tuple[int, Path, Path]) -> None:
    port, data, log = served
    index = data / "pki" / "clients.json"
    deadline = time.monotonic() + 90
    status, body = None, ""
    while time.monotonic() < deadline and status != 200:
        time.sleep(0.3)
        if not index.exists():
            continue
        pki = json.loads(index.read_text())
        device = next(c for c in pki["clients"] if c["kind"] == "device")
        tls = ssl.create_default_context(cafile=pki["ca"])
        tls.load_cert_chain(device["cert"], device["key"])
        try:
            r = httpx.get(f"https://127.0.0.1:{port}/dcap", verify=tls, timeout=5)
            status, body = r.status_code, r.text
        except (httpx.TransportError, json.JSONDecodeError):
            continue
    assert status == 200, log.read_text()
    assert "DeviceCapability" in body
    text = log.read_text()
    assert "created the database schema" in text  # the migrations were in the wheel
    assert "loaded the demo feeder (30 sites)" in text  # and so was the example network
    assert "Traceback" not in text
