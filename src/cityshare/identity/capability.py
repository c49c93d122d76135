"""Identity: residents, organisations, devices and their keys, credentials and the access log."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cityshare.identity import commands, handlers, records
from cityshare.identity.model import IdentityStore
from cityshare.identity.repo import IdentityRepository
from cityshare.kernel import keys
from cityshare.kernel.capability import Capability, CommandHandler

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter
    from sqlalchemy import Connection

    from cityshare.kernel.seal import Sealer


def _open_identity(conn: Connection, _: Sealer | None) -> IdentityStore:
    """Identity's store on a transaction; typed as the protocol its handlers see, so mypy
    checks here that `IdentityRepository` satisfies `IdentityStore`."""
    return IdentityRepository(conn)


def _handlers(platform: Any) -> Mapping[type, CommandHandler]:
    issuers = keys.parse_verifiers(platform.settings.issuer_keys)
    return {
        commands.EnrolResident: functools.partial(
            handlers.enrol_resident, issuers=issuers, sector=platform.settings.sector
        ),
        commands.CreateOrganisation: handlers.create_organisation,
        commands.RegisterDevice: handlers.register_device,
        commands.RevokeDevice: handlers.revoke_device,
        commands.RotateDeviceKey: handlers.rotate_device_key,
        commands.RecordAccess: handlers.record_access,
    }


def _routers() -> Sequence[APIRouter]:
    from cityshare.identity.api import router
    from cityshare.identity.organisations_api import router as organisations

    return [router, organisations]


def _cli() -> Sequence[tuple[str, typer.Typer]]:
    from cityshare.identity.org_cli import app as org
    from cityshare.identity.token_cli import app as token

    return [("token", token), ("org", org)]


CAPABILITY = Capability(
    "identity",
    repositories={"identity": _open_identity},
    handlers=_handlers,
    records=records.RECORDS,
    routers=_routers,
    cli=_cli,
)
