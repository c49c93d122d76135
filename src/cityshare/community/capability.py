"""Community assets: shares held by residents, and each period's earnings paid out to them."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cityshare.community import checks, commands, handlers, records
from cityshare.community.model import CommunityStore
from cityshare.community.repo import CommunityRepository
from cityshare.kernel.capability import Capability, CommandHandler, Job

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter
    from sqlalchemy import Connection

    from cityshare.kernel.seal import Sealer


def _open_community(conn: Connection, sealer: Sealer | None) -> CommunityStore:
    """Community's store on a transaction; typed as the protocol its handlers see, so mypy checks
    here that `CommunityRepository` satisfies `CommunityStore`."""
    return CommunityRepository(conn)


def _handlers(platform: Any) -> Mapping[type, CommandHandler]:
    zone, period = platform.tariff.zone, platform.settings.community_period
    return {
        commands.IssueShares: handlers.issue_shares,
        commands.TransferShares: handlers.transfer_shares,
        commands.DistributeCommunityEarnings: functools.partial(
            handlers.distribute_earnings, zone=zone, period=period
        ),
        commands.SettleCommunityAssets: functools.partial(
            handlers.settle, zone=zone, period=period
        ),
    }


def _routers() -> Sequence[APIRouter]:
    from cityshare.community.api import router

    return [router]


def _cli() -> Sequence[tuple[str, typer.Typer]]:
    from cityshare.community.cli import app

    return [("community", app)]


CAPABILITY = Capability(
    "community",
    repositories={"community": _open_community},
    handlers=_handlers,
    records=records.RECORDS,
    # The holdings derived from the share events.
    checks=[checks.derived_problems],
    routers=_routers,
    cli=_cli,
    jobs=[
        Job(
            "settle-community",
            lambda s: s.community_settle_seconds,
            commands.SettleCommunityAssets,
        )
    ],
)
