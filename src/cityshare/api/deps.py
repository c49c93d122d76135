"""Dependencies shared by the routers: the running platform and who is calling.

A caller is authenticated by a bearer token: one the platform signed (residents, devices,
staff with a role and purposes), or the static operator token from settings, which stands for
an administrator (how a fresh deployment issues its first staff credentials).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cityshare.api.errors import ApiError
from cityshare.bootstrap import Platform
from cityshare.identity.policy import Domain, Purpose, Role
from cityshare.identity.tokens import CredentialError, Principal

_bearer = HTTPBearer(
    auto_error=False,
    description="A token the platform issued (resident, device or staff), or the operator "
    "token from settings.",
)

SETTINGS_ADMIN = Principal("settings-operator-token", Role.ADMIN, frozenset(Purpose))


def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]


def get_principal(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise ApiError(401, "unauthorized", "send `Authorization: Bearer <token>`")
    token = credentials.credentials
    static = platform.settings.operator_token
    if static is not None and secrets.compare_digest(
        token.encode(), static.get_secret_value().encode()
    ):
        return SETTINGS_ADMIN
    try:
        return platform.tokens.verify(token, now=platform.clock.now_ns() // 1_000_000_000)
    except CredentialError as exc:
        raise ApiError(401, "unauthorized", str(exc)) from exc


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    allowed = frozenset(roles)

    def check(principal: PrincipalDep) -> Principal:
        if principal.role not in allowed:
            names = ", ".join(sorted(allowed))
            raise ApiError(403, "forbidden", f"this operation is for: {names}")
        return principal

    return check


def require_platform_operator(principal: PrincipalDep) -> Principal:
    """Moving value by hand is for administrators and operators of the platform itself: an
    energy or parking operator must not be able to post transfers from a resident's wallet."""
    if principal.role == Role.ADMIN or (
        principal.role == Role.OPERATOR and principal.domain == Domain.PLATFORM
    ):
        return principal
    raise ApiError(403, "forbidden", "this operation is for admins and platform operators")


#: Ledger reads: administrators and operators (reads of residents' accounts are recorded).
OperatorDep = Depends(require_roles(Role.ADMIN, Role.OPERATOR))
#: Ledger writes: administrators and operators of the platform domain.
LedgerWriterDep = Depends(require_platform_operator)
ResidentDep = Annotated[Principal, Depends(require_roles(Role.RESIDENT))]
StaffDep = Annotated[
    Principal,
    Depends(require_roles(Role.OPERATOR, Role.ANALYST, Role.AUDITOR, Role.REGULATOR, Role.ADMIN)),
]
AdminDep = Annotated[Principal, Depends(require_roles(Role.ADMIN))]
#: A counterparty (a charging-station or parking operator) is an operator credential.
CounterpartyDep = Annotated[Principal, Depends(require_roles(Role.OPERATOR))]


def require_org_staff(principal: Principal, org_id: int) -> None:
    """Administrators, and staff whose credential names this organisation."""
    if principal.role == Role.ADMIN:
        return
    if principal.role == Role.OPERATOR and principal.org_id == org_id:
        return
    raise ApiError(403, "forbidden", "this is for administrators and the organisation's staff")
