"""`brandforge rollout` and `brandforge campaign` (serving.cli.rollout, serving.cli.campaign)
against a recording HTTP server on loopback: what they send, what they print, how they fail.
The same commands against the real server run in tests/serving/test_app.py."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner


class Recorder(BaseHTTPRequestHandler):
    """Answers every request with the next canned (status, body) and records it."""

    answers: list[tuple[int, dict[str, Any]]] = []
    seen: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "body": body,
            }
        )
        status, answer = self.answers.pop(0) if self.answers else (200, {})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[Recorder]]]:
    handler = type("Handler", (Recorder,), {"answers": [], "seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_rollout_start_status_abort(cli: typer.Typer, server) -> None:
    url, handler = server
    handler.answers = [(200, {"state": "running"}), (200, {"step": 1}), (200, {"ok": True})]
    runner = CliRunner()
    common = ["--brand", "acme", "--url", url, "--key", "bf_k"]
    start = runner.invoke(
        cli, ["rollout", "start", *common, "--version", "4", "--steps", "5,50,100", "--shadow"]
    )
    assert start.exit_code == 0, start.output
    assert json.loads(start.stdout) == {"state": "running"}
    assert runner.invoke(cli, ["rollout", "status", *common]).exit_code == 0
    abort = runner.invoke(cli, ["rollout", "abort", *common, "--reason", "bad logo"])
    assert abort.exit_code == 0, abort.output
    assert handler.seen == [
        {
            "method": "POST",
            "path": "/v1/rollouts",
            "auth": "Bearer bf_k",
            "body": {"brand": "acme", "version": "4", "mode": "shadow", "steps": [5, 50, 100]},
        },
        {"method": "GET", "path": "/v1/rollouts/acme", "auth": "Bearer bf_k", "body": None},
        {
            "method": "POST",
            "path": "/v1/rollouts/acme/abort",
            "auth": "Bearer bf_k",
            "body": {"reason": "bad logo"},
        },
    ]


def test_rollout_refusals(cli: typer.Typer, server) -> None:
    url, handler = server
    handler.answers = [(409, {"detail": "a rollout of acme is already running"})]
    runner = CliRunner()
    refused = runner.invoke(
        cli, ["rollout", "start", "--brand", "acme", "--version", "4", "--url", url]
    )
    assert refused.exit_code == 1
    assert refused.stderr.strip() == "rollout: 409: a rollout of acme is already running"

    for brand in ("Acme", "bases", "a/b"):  # never sent: a brand option is a brand name
        bad = runner.invoke(cli, ["rollout", "status", "--brand", brand, "--url", url])
        assert bad.exit_code == 2 and "Invalid value for '--brand'" in bad.output
    steps = runner.invoke(
        cli, ["rollout", "start", "--brand", "acme", "--version", "4", "--steps", "5,x"]
    )
    assert steps.exit_code == 2 and "'--steps'" in steps.output
    assert len(handler.seen) == 1

    gone = runner.invoke(
        cli, ["rollout", "status", "--brand", "acme", "--url", "http://127.0.0.1:9"]
    )
    assert gone.exit_code == 1 and gone.stderr.startswith("rollout: cannot reach")


def test_campaign_submit_status_cancel(cli: typer.Typer, server, tmp_path: Path) -> None:
    url, handler = server
    spec = tmp_path / "c.yaml"
    spec.write_text("brand: acme\ntemplate: '{brand} banner'\n")
    handler.answers = [(202, {"campaign_id": "c1", "total": 1}), (200, {}), (200, {})]
    runner = CliRunner()
    key = ["--url", url, "--key", "bf_k"]
    submitted = runner.invoke(cli, ["campaign", "submit", str(spec), *key])
    assert submitted.exit_code == 0, submitted.output
    assert json.loads(submitted.stdout)["campaign_id"] == "c1"
    assert runner.invoke(cli, ["campaign", "status", "c1", "--items", *key]).exit_code == 0
    assert runner.invoke(cli, ["campaign", "cancel", "c1", *key]).exit_code == 0
    sent = [(s["method"], s["path"]) for s in handler.seen]
    assert sent == [
        ("POST", "/v1/campaigns"),
        ("GET", "/v1/campaigns/c1?items=true"),
        ("DELETE", "/v1/campaigns/c1"),
    ]
    assert handler.seen[0]["body"]["brand"] == "acme"

    missing = runner.invoke(cli, ["campaign", "submit", str(tmp_path / "nope.yaml"), *key])
    assert missing.exit_code == 2 and "no such file" in missing.stderr
    spec.write_text("brand: Acme\ntemplate: x\n")
    invalid = runner.invoke(cli, ["campaign", "submit", str(spec), *key])
    assert invalid.exit_code == 2 and "brand" in invalid.stderr and len(handler.seen) == 3
