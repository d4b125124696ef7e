"""Runtime settings from the environment (never from `params.yaml`).

With nothing set, everything is embedded: MLflow on `sqlite:///mlflow.db` with artifacts in
`./mlartifacts`, the serving database on `sqlite:///serving.db`, asset files in `./assets`, kept
forever. Production points the same code elsewhere by environment alone (PostgreSQL, an
S3-compatible asset store, per-brand retention). Dict-valued settings take JSON, e.g.
`BRANDFORGE_RETENTION_DAYS='{"acme": 30, "*": 90}'`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class BrandLimits(BaseModel):
    """Admission limits of one brand, summed over all its keys (`brand_limits`); None: none."""

    model_config = ConfigDict(extra="forbid")

    rate_per_minute: int | None = Field(default=None, ge=1, le=1_000_000)
    daily_images: int | None = Field(default=None, ge=1, le=1_000_000_000)
    max_cost: int | None = Field(default=None, ge=1, le=1_000_000_000)  # replaces the version's


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
    # The local folder of asset files when `asset_store` is unset (the embedded default).
    asset_dir: Path = Path("assets")
    # Where asset files live, as an fsspec URL: `s3://bucket/prefix` (any S3-compatible store;
    # needs s3fs), `file:///srv/assets`, or a plain path. Unset: the folder `asset_dir`.
    asset_store: str | None = None
    # Options for the store's fsspec filesystem, as JSON: for S3, e.g.
    # {"endpoint_url": "http://127.0.0.1:9000", "key": "...", "secret": "..."}. Leave the keys
    # out to let s3fs (botocore) find credentials as usual: AWS_ACCESS_KEY_ID and
    # AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_ENDPOINT_URL, an instance role. Kept out of repr,
    # since it may hold a secret.
    asset_store_options: dict[str, Any] = Field(default_factory=dict, repr=False)
    # Days an asset is kept after it was created, per brand, as JSON: {"acme": 30, "*": 90};
    # `*` applies to brands not named. A brand with no entry (and no `*`) is kept forever.
    # Expired assets are removed by `brandforge assets purge`.
    retention_days: dict[str, float] = Field(default_factory=dict)
    # In-memory cache of asset bytes per process (LRU); 0 turns it off.
    asset_cache_mb: int = Field(default=64, ge=0)
    # Encryption at rest of asset files (serving.assets.crypto): a key file of named keys,
    # one `<key id> <base64 32 bytes>` per line, the last the newest (`brandforge assets
    # new-key` adds one); or one base64 key. Unset (the default): files are stored in clear.
    asset_key_file: Path | None = None
    asset_key: SecretStr | None = None
    # Server-side encryption of an S3 asset store: "AES256" (SSE-S3) or "aws:kms" (SSE-KMS,
    # with `asset_s3_kms_key_id`, else the bucket's AWS-managed key). Unset: the bucket's default.
    asset_s3_sse: Literal["AES256", "aws:kms"] | None = None
    asset_s3_kms_key_id: str | None = Field(default=None, max_length=2048)
    # Brands whose every generated asset waits for a person's approval before delivery
    # (JSON list: BRANDFORGE_REVIEW_BRANDS='["acme"]'); others go to review only when they fail
    # the brand kit after their retries.
    review_brands: list[str] = Field(default_factory=list)
    # Admission (serving.admission): generation requests (live and campaign submissions) per
    # minute and images per UTC day, per API key, unless the key has its own (`brandforge keys
    # limits`); 0: no limit. Counted in the serving database, so they hold across replicas.
    rate_per_minute: int = Field(default=120, ge=0, le=1_000_000)
    daily_images: int = Field(default=10_000, ge=0, le=1_000_000_000)
    # The largest cost of one request (cost units: one native-size image at one step), for
    # every version; unset: each version's own limit, recorded at registration.
    max_request_cost: int | None = Field(default=None, ge=1, le=1_000_000_000)
    # Limits per brand, over all of its keys, as JSON; `*` applies to brands not named:
    # BRANDFORGE_BRAND_LIMITS='{"acme": {"rate_per_minute": 600, "daily_images": 50000,
    # "max_cost": 500}}'. A brand without an entry has no brand-wide limit.
    brand_limits: dict[str, BrandLimits] = Field(default_factory=dict)
    # Terms no prompt, negative prompt or campaign text may use, for every brand, on top of
    # each brand kit's `banned_terms` (JSON list: BRANDFORGE_BANNED_TERMS='["free money"]';
    # whole words, case- and accent-insensitive: serving.policy).
    banned_terms: list[str] = Field(default_factory=list, max_length=2000)
    # The secret of the keyed hashes (HMAC-SHA256) that let `brandforge privacy erase` find the
    # personal data prompts held before redaction (serving.privacy). Give every replica and
    # the CLI the same key: BRANDFORGE_PRIVACY_KEY (at least 16 characters), else the file
    # BRANDFORGE_PRIVACY_KEY_FILE; unset, a file `privacy.key` beside an SQLite serving
    # database (else in the working folder), made owner-only on first use. A new key loses
    # the references recorded under the old one.
    privacy_key: SecretStr | None = Field(default=None, min_length=16)
    privacy_key_file: Path | None = None
    # C2PA content credentials (serving.delivery.credentials): the PEM certificate chain
    # (signing certificate first) and its unencrypted PEM private key that sign every
    # delivered file. Both unset: files are delivered without a C2PA manifest (logged once);
    # `brandforge credentials dev-cert` makes a development pair.
    c2pa_cert: Path | None = None
    c2pa_key: Path | None = None
    # An RFC 3161 time-stamp authority for the C2PA signatures (the only network use of
    # signing); unset: signatures carry no trusted time.
    c2pa_tsa_url: str | None = None
    # HTTPS for `brandforge serve` (serving.tls): the PEM certificate (chain, server first) and
    # its PEM private key, both or neither; checked before Ray starts. Unset: plain HTTP, fine
    # on 127.0.0.1. On a cluster the files must be at these paths on every node with a proxy.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The password of an encrypted `tls_key`; kept out of repr.
    tls_key_password: str | None = Field(default=None, repr=False)

    @field_validator("tls_cert", "tls_key", "tls_key_password", mode="before")
    @classmethod
    def _blank_tls_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("c2pa_cert", "c2pa_key", "c2pa_tsa_url", mode="before")
    @classmethod
    def _blank_c2pa_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("banned_terms")
    @classmethod
    def _terms_are_words(cls, value: list[str]) -> list[str]:
        for term in value:
            if not term.strip() or len(term) > 200:
                raise ValueError(
                    f"banned_terms holds {term[:40]!r}: give terms of 1 to 200 characters"
                )
        return value

    @field_validator("privacy_key", "privacy_key_file", mode="before")
    @classmethod
    def _blank_privacy_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("asset_store")
    @classmethod
    def _blank_store_is_unset(cls, value: str | None) -> str | None:
        # BRANDFORGE_ASSET_STORE= (set but empty) means "the default", not a store named "".
        if value is None or not value.strip():
            return None
        return value.strip()

    @field_validator(
        "asset_key_file", "asset_key", "asset_s3_sse", "asset_s3_kms_key_id", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # An exported but empty variable means "not set", not a key file named "".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _kms_key_needs_kms(self) -> Settings:
        if self.asset_s3_kms_key_id is not None and self.asset_s3_sse != "aws:kms":
            raise ValueError(
                "BRANDFORGE_ASSET_S3_KMS_KEY_ID is set but BRANDFORGE_ASSET_S3_SSE is not "
                "'aws:kms': set both for SSE-KMS"
            )
        return self

    @field_validator("retention_days")
    @classmethod
    def _retention_is_a_duration(cls, value: dict[str, float]) -> dict[str, float]:
        for brand, days in value.items():
            if not brand.strip():
                raise ValueError("retention_days has an empty brand name; use '*' for the default")
            if not math.isfinite(days) or days < 0:
                raise ValueError(
                    f"retention_days[{brand!r}] = {days}: give a number of days >= 0 "
                    "(leave the brand out to keep its assets forever)"
                )
        return value

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
