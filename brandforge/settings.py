"""Runtime settings from the environment (never from `params.yaml`).

With nothing set, everything is embedded: MLflow on `sqlite:///mlflow.db` with artifacts in
`./mlartifacts`. Production points the same code elsewhere by environment alone.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BRANDFORGE_", extra="ignore")

    # MLFLOW_TRACKING_URI (MLflow's own variable) wins over this when set.
    tracking_uri: str = "sqlite:///mlflow.db"
    # Where a newly created experiment keeps its artifacts; ignored for a tracking server
    # that proxies artifacts (it decides).
    artifact_root: str = "mlartifacts"
    experiment_prefix: str = "brandforge"
    # Cached VAE latents / text embeddings, keyed by dataset hash and base model identity.
    cache_dir: Path = Path("cache")
    # The serving tier's database (API keys, audit log, assets, rollouts): SQLite embedded,
    # PostgreSQL in production (postgresql://...).
    serving_db: str = "sqlite:///serving.db"
    # Where generated assets are stored (local folder; object storage arrives with campaigns).
    asset_dir: Path = Path("assets")

    def resolved_tracking_uri(self) -> str:
        import os

        return sqlalchemy_url(os.environ.get("MLFLOW_TRACKING_URI") or self.tracking_uri)


def sqlalchemy_url(uri: str) -> str:
    """A database URI as SQLAlchemy must get it here: a PostgreSQL URI without a driver gets
    `+psycopg2`.

    SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which this project does not install
    (it depends on psycopg2-binary), and rejects `postgres://` (Heroku style) outright. A URI
    that names its driver, or is not PostgreSQL, is returned as it is. Used for the MLflow
    tracking store, the MLflow server's backend store and the serving database alike.
    """
    scheme, sep, rest = uri.partition("://")
    if sep and scheme.lower() in ("postgresql", "postgres"):
        return f"postgresql+psycopg2://{rest}"
    return uri


@lru_cache
def get_settings() -> Settings:
    return Settings()
