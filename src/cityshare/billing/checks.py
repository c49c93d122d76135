"""Billing's checks of state derived from its logged records, run by `audit verify`."""

from __future__ import annotations

from cityshare.billing.model import BILL_TRANSFER_BASE
from cityshare.billing.uow import BillingUnitOfWork


def derived_problems(
    uow: BillingUnitOfWork, *, limit: int = 100
) -> list[tuple[str, int | str | None, str]]:
    """`audit verify`'s check of the arrears queue against the bills and the ledger: a bill
    is queued exactly while its amount is unpaid (no payment transfer exists)."""
    missing, extra = uow.billing.arrears_mismatches(BILL_TRANSFER_BASE, limit)
    return [
        *(("energy_arrears", b, "an unpaid bill is missing from the arrears queue")
          for b in missing),
        *(("energy_arrears", b, "queued as unpaid but it is paid, free or not a bill of "
           "this resident") for b in extra),
    ]  # fmt: skip
