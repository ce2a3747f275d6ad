"""``create_service_app``: the one way a scalecube FastAPI service is assembled.

settings = ApiSettings.load()
app = create_service_app("api", settings, readiness={"redis": connector.ping})
app.include_router(users.router)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI
from starlette.types import Lifespan

from services.common.errors import InternalErrorMiddleware, document_errors, install_error_handlers
from services.common.health import ReadinessCheck, health_router
from services.common.identity import current_identity
from services.common.logging import configure_logging
from services.common.metrics import MetricsMiddleware, metrics_router
from services.common.middleware import BodyLimitMiddleware, ServedByMiddleware
from services.common.settings import ServiceSettings

log = logging.getLogger("scalecube.service")


def create_service_app(
    name: str,
    settings: ServiceSettings,
    *,
    readiness: Mapping[str, ReadinessCheck] | None = None,
    lifespan: Lifespan[FastAPI] | None = None,
) -> FastAPI:
    """A FastAPI app with logging, JSON errors (documented in its OpenAPI schema), body limit,
    X-Served-By, metrics, ``/healthz``, ``/readyz`` (running ``readiness``) and ``/metrics``."""
    configure_logging(settings.log_level, access_log=settings.access_log)
    identity = current_identity()

    app = FastAPI(title=name, lifespan=lifespan)
    app.state.service_name = name
    app.state.settings = settings
    install_error_handlers(app)
    document_errors(app)  # before any route: every route then documents the kit's error answers
    app.include_router(health_router(readiness))
    app.include_router(metrics_router())

    # add_middleware wraps the app built so far, so the LAST added runs FIRST.
    # Request path, outermost first:
    #   ServedBy  -> every response carries X-Served-By, even a 413 or a 500
    #   Metrics   -> counts the rejected and failed requests too, with their status
    #   BodyLimit -> refuses oversized bodies before any routing or parsing
    #   InternalError -> turns a crash into the 500 JSON that the layers above still see
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(ServedByMiddleware)

    log.info(
        "%s app created: worker %d, slot %d, pid %d, host %s",
        name,
        identity.worker_id,
        identity.slot,
        identity.pid,
        identity.host,
    )
    return app
