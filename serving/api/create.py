"""`create_api(services)`: a new FastAPI application with every router, per ingress replica.

Each call builds its own app (no module-global FastAPI), so two replicas or two tests in one
process never register a route twice.
"""

from __future__ import annotations

from fastapi import FastAPI

from serving.api import errors
from serving.api.body_limit import BodyLimit
from serving.api.routes import (
    assets,
    campaigns,
    generate,
    models,
    ops,
    privacy,
    review,
    rollouts,
)
from serving.api.services import Services

DESCRIPTION = (
    "Brand-safe generative marketing visuals: generate on-brand images with the brand's "
    "production model, each scored for brand compliance. Every /v1 route needs an API key "
    "(`brandforge keys create`) with the route's role for the brand it touches."
)


def create_api(services: Services) -> FastAPI:
    """The HTTP API over `services`."""
    app = FastAPI(title="BrandForge", version="0.1.0", description=DESCRIPTION)
    app.state.services = services
    for module in (ops, models, generate, assets, rollouts, campaigns, review, privacy):
        app.include_router(module.router)
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=services.config.max_body_bytes)
    return app
