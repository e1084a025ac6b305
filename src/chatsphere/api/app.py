"""The FastAPI application for HTTP_PORT."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .. import __version__
from ..app import ChatSphereService
from .asyncapi import build_asyncapi
from .errors import install_error_handlers
from .routes import router
from .schemas import HealthOut

HealthProvider = Callable[[], Awaitable[dict[str, Any]]]


def create_api(
    service: ChatSphereService,
    health: HealthProvider,
    registry: CollectorRegistry,
) -> FastAPI:
    api = FastAPI(
        title="ChatSphere",
        version=__version__,
        description=(
            "REST API of a ChatSphere node. Authenticate with `Authorization: Bearer JWT`. "
            "The WebSocket protocol is described at /asyncapi.json and in docs/protocol.md."
        ),
    )
    api.state.service = service
    install_error_handlers(api)
    api.include_router(router)
    asyncapi = build_asyncapi()

    @api.get("/health", response_model=HealthOut, tags=["operations"])
    async def get_health() -> dict[str, Any]:
        """Liveness and readiness: 200 when the store and the bus answer, else 503."""
        body = await health()
        if body["status"] != "ok":
            return JSONResponse(body, status_code=503)  # type: ignore[return-value]
        return body

    @api.get("/metrics", tags=["operations"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/asyncapi.json", tags=["operations"])
    async def get_asyncapi() -> dict[str, Any]:
        """AsyncAPI 3.0 description of the WebSocket protocol."""
        return asyncapi

    return api
