"""Dependencies shared by the routers: the running platform and operator authentication."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cityshare.api.errors import ApiError
from cityshare.bootstrap import Platform

_bearer = HTTPBearer(auto_error=False, description="The operator token from settings.")


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def require_operator(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    expected = platform.settings.operator_token
    if expected is None:
        raise ApiError(503, "not_configured", "no operator token is configured on this server")
    if credentials is None:
        raise ApiError(401, "unauthorized", "send `Authorization: Bearer <operator token>`")
    if not secrets.compare_digest(
        credentials.credentials.encode(), expected.get_secret_value().encode()
    ):
        raise ApiError(401, "unauthorized", "the bearer token is not valid")


OperatorDep = Depends(require_operator)
