"""Request dependencies: the facade and the authenticated caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..app import ChatSphereService
from ..auth import Principal


def get_service(request: Request) -> ChatSphereService:
    service: ChatSphereService = request.app.state.service
    return service


def get_principal(request: Request) -> Principal:
    service = get_service(request)
    return service.authority.authenticate(
        dict(request.query_params), request.headers.get("Authorization")
    )


Service = Annotated[ChatSphereService, Depends(get_service)]
Caller = Annotated[Principal, Depends(get_principal)]
