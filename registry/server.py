"""`brandforge mlflow-server`: the production tracking server (PostgreSQL, proxied artifacts)."""

from __future__ import annotations


def mlflow_server_command() -> None:
    """Run the MLflow tracking server."""
