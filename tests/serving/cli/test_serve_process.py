"""`brandforge serve` as an operator runs it: a bad TLS file stops it before Ray starts; a real
server (its own process, a local Ray) answers HTTPS only, every Ray process listens on loopback
only, and SIGTERM ends every one of them and exits 0."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests
import typer
from typer.testing import CliRunner

from tests.serving.certificates import make_server_certificate, write_other_key

pytestmark = pytest.mark.ray  # `make test` runs these after the rest, alone (Makefile)

START_TIMEOUT_S = 180  # Ray, Serve and four deployments on two busy cores


def test_a_mismatched_tls_key_stops_serve_before_anything_starts(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from brandforge.settings import get_settings

    certificate = make_server_certificate(tmp_path / "tls")
    other = write_other_key(tmp_path / "other.key")
    monkeypatch.setenv("BRANDFORGE_TLS_CERT", str(certificate.cert))
    monkeypatch.setenv("BRANDFORGE_TLS_KEY", str(other))
    monkeypatch.setenv("BRANDFORGE_SERVING_DB", f"sqlite:///{tmp_path / 'serving.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve", "--dev"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2, result.output
    assert f"BRANDFORGE_TLS_KEY={other} does not belong to the certificate" in result.stderr
    assert not (tmp_path / "serving.db").exists()  # stopped before the database, and Ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_loopback


def _listening(processes: list[psutil.Process]) -> set[tuple[str, str, int]]:
    found = set()
    for process in processes:
        for conn in process.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.add((" ".join(process.cmdline())[:60], conn.laddr.ip, conn.laddr.port))
    return found


def _wait_for_start(proc: subprocess.Popen[bytes], log: Path, banner: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while banner not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"brandforge serve did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


@pytest.mark.e2e
def test_serve_answers_https_on_loopback_and_sigterm_ends_every_ray_process(
    ray_turn: None, tmp_path: Path
) -> None:
    certificate = make_server_certificate(tmp_path / "tls")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "BRANDFORGE_"))}
    env.update(
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
        BRANDFORGE_SERVING_DB=f"sqlite:///{tmp_path / 'serving.db'}",
        BRANDFORGE_ASSET_DIR=str(tmp_path / "assets"),
        BRANDFORGE_TLS_CERT=str(certificate.cert),
        BRANDFORGE_TLS_KEY=str(certificate.key),
        PYTHONUNBUFFERED="1",
    )
    port = _free_port()
    log = tmp_path / "serve.log"
    argv = [sys.executable, "-m", "brandforge", "serve", "--dev", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*argv, "--campaign-workers", "0"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    ray: list[psutil.Process] = []
    try:
        _wait_for_start(proc, log, f"BrandForge serving on https://127.0.0.1:{port}")
        ray = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in ray)
        assert all(n in names for n in ("gcs_server", "raylet", "DashboardAgent", "RuntimeEnv"))
        listening = _listening([psutil.Process(proc.pid), *ray])
        exposed = sorted(entry for entry in listening if not _is_loopback(entry[1]))
        assert listening and not exposed, exposed

        url = f"https://127.0.0.1:{port}"
        health = requests.get(f"{url}/healthz", verify=str(certificate.ca), timeout=30)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        _, alive = psutil.wait_procs(ray, timeout=15)
        assert not alive, [" ".join(p.cmdline())[:80] for p in alive]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for process in ray:
            if process.is_running():
                process.kill()
