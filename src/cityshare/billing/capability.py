"""Billing: price lists, provider choices, top-ups, pay-as-you-go bills of imported energy."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cityshare.billing import checks, commands, handlers, records, top_ups
from cityshare.billing.model import BillingStore
from cityshare.billing.openapi import price_list_schema
from cityshare.billing.repo import BillingRepository
from cityshare.kernel.capability import Capability, CommandHandler, Job

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy import Connection

    from cityshare.kernel.seal import Sealer


def _open_billing(conn: Connection, sealer: Sealer | None) -> BillingStore:
    """Billing's store on a transaction; typed as the protocol its handlers see, so mypy checks
    here that `BillingRepository` satisfies `BillingStore`."""
    return BillingRepository(conn)


def _handlers(platform: Any) -> Mapping[type, CommandHandler]:
    return {
        commands.SetPriceList: functools.partial(handlers.set_price_list, tariff=platform.tariff),
        commands.ChooseProvider: handlers.choose_provider,
        commands.TopUpWallet: top_ups.top_up_wallet,
        commands.BillEnergy: functools.partial(
            handlers.bill_energy, default_provider_setting=platform.settings.default_provider
        ),
    }


def _routers() -> Sequence[APIRouter]:
    from cityshare.billing.api import router

    return [router]


def _openapi(platform: Any, spec: dict[str, Any]) -> None:
    price_list_schema(spec, handlers.tariff_windows(platform.tariff))


CAPABILITY = Capability(
    "billing",
    repositories={"billing": _open_billing},
    handlers=_handlers,
    records=records.RECORDS,
    checks=[checks.derived_problems],
    routers=_routers,
    jobs=[Job("bill-energy", lambda s: s.billing_seconds, commands.BillEnergy)],
    openapi=_openapi,
)
