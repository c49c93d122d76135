"""Billing's read side: providers' price lists, a resident's provider, the monthly statement;
and the reads of sellers, price versions and the default provider the handlers share."""

from __future__ import annotations

import json
from dataclasses import dataclass

from cityshare.billing.model import (
    BILL_TRANSFER_BASE,
    BillingCode,
    BillingError,
    Month,
    PriceBook,
    PriceListRow,
    PriceVersion,
    party_of_wallet,
)
from cityshare.billing.uow import BillingUnitOfWork
from cityshare.energy.tariff import Tariff
from cityshare.identity.model import OrganisationRow
from cityshare.identity.organisations import OrgKind, is_organisation
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger.model import Ledger

#: Organisations that sell energy to residents.
SELLER_KINDS = frozenset({OrgKind.PROVIDER.value, OrgKind.COMMUNITY.value})


def seller(uow: BillingUnitOfWork, org_id: int) -> OrganisationRow:
    org = uow.identity.organisation(org_id) if is_organisation(org_id) else None
    if org is None:
        raise BillingError("not_found", "no such organisation")
    if org.kind not in SELLER_KINDS:
        raise BillingError(
            "not_a_provider", f"a {org.kind} does not sell energy (a provider or community does)"
        )
    return org


def price_versions(rows: list[PriceListRow]) -> list[PriceVersion]:
    return [PriceVersion(r.id, r.provider_id, r.effective_from, json.loads(r.prices)) for r in rows]


def default_provider(uow: BillingUnitOfWork, setting: int | None) -> int | None:
    """The provider of residents who never chose one (inside an open unit of work)."""
    if setting is not None:
        org = uow.identity.organisation(setting) if is_organisation(setting) else None
        if org is None or org.kind not in SELLER_KINDS:
            raise BillingError(
                "invalid_setting",
                f"CITYSHARE_DEFAULT_PROVIDER={setting} is not a provider or community on "
                "this platform",
            )
        return setting
    providers = uow.identity.organisations(OrgKind.PROVIDER.value)
    return min((o.id for o in providers), default=None)


@dataclass(frozen=True, slots=True)
class PriceListView:
    id: int
    provider_id: int
    effective_from: int
    prices: dict[str, int]
    set_by: str
    at: int


@dataclass(frozen=True, slots=True)
class ProviderPrices:
    provider: OrganisationRow
    current: PriceListView | None
    upcoming: list[PriceListView]


def price_list_view(row: PriceListRow) -> PriceListView:
    return PriceListView(
        row.id, row.provider_id, row.effective_from, json.loads(row.prices), row.set_by, row.at
    )


def _prices_of(uow: BillingUnitOfWork, org: OrganisationRow, now_s: int) -> ProviderPrices:
    rows = uow.billing.price_lists_of([org.id])
    book = PriceBook(price_versions(rows))
    by_id = {r.id: r for r in rows}
    current = book.at(org.id, now_s)
    return ProviderPrices(
        org,
        price_list_view(by_id[current.id]) if current else None,
        [price_list_view(by_id[v.id]) for v in book.upcoming(org.id, now_s)],
    )


def provider_prices(uow: BillingUnitOfWork, org_id: int) -> ProviderPrices:
    """A provider's price list in force now and those set to take effect later."""
    with uow:
        org = seller(uow, org_id)
        return _prices_of(uow, org, uow.clock.now_ns() // 1_000_000_000)


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    provider: ProviderPrices | None
    #: "chosen" (since `since`), or "default" (never chose: the platform's default provider).
    basis: str
    since: int | None


def current_provider(
    uow: BillingUnitOfWork, resident_id: int, *, default_setting: int | None
) -> ProviderChoice:
    with uow:
        now_s = uow.clock.now_ns() // 1_000_000_000
        rows = uow.billing.choices_of([resident_id])
        chosen = [c for c in rows if c.effective_from <= now_s]
        if chosen:
            latest = max(chosen, key=lambda c: (c.effective_from, c.id))
            org = seller(uow, latest.provider_id)
            return ProviderChoice(_prices_of(uow, org, now_s), "chosen", latest.effective_from)
        default = default_provider(uow, default_setting)
        if default is None:
            return ProviderChoice(None, "default", None)
        return ProviderChoice(_prices_of(uow, seller(uow, default), now_s), "default", None)


@dataclass(frozen=True, slots=True)
class ImportLine:
    provider_id: int
    provider: str | None
    window: str
    import_wh: int
    amount: int
    bills: int


@dataclass(frozen=True, slots=True)
class ExportLine:
    window: str
    export_wh: int
    carbon_g: int
    credit_milli: int


@dataclass(frozen=True, slots=True)
class PaymentLine:
    provider_id: int
    provider: str | None
    amount: int
    count: int


@dataclass(frozen=True, slots=True)
class MonthlyStatement:
    resident_id: int
    month: str
    timezone: str
    start_ts: int
    end_ts: int
    imports: list[ImportLine]
    exports: list[ExportLine]
    payments: list[PaymentLine]
    #: Wh imported in the month (all credited intervals) and the part not billed yet.
    import_wh: int
    unbilled_import_wh: int
    billed: int
    #: The INR wallet (paise): balance at the month's start and end, what came in, what paid
    #: bills and what else went out; opening + received - paid - other_debits == closing.
    opening: int
    received: int
    paid: int
    other_debits: int
    closing: int
    #: Owed for energy imported up to the month's end and not paid by then; owed now.
    arrears_at_close: int
    arrears_bills_at_close: int
    arrears_now: int
    arrears_bills_now: int
    export_wh: int
    carbon_g: int
    credit_milli: int


def monthly_statement(
    uow: BillingUnitOfWork, resident_id: int, month: Month, *, tariff: Tariff
) -> MonthlyStatement:
    """A resident's month (the tariff's local time): what they imported and were billed per
    provider and window, what they exported and earned per window, and their INR wallet."""
    start_ns, end_ns = month.start_s * 1_000_000_000, month.end_s * 1_000_000_000
    wallet = wallet_account_id(resident_id, Ledger.INR)
    with uow:
        repo = uow.billing
        bill_rows = repo.bill_sums(resident_id, month.start_s, month.end_s)
        interval_rows = repo.interval_sums(resident_id, month.start_s, month.end_s)
        opening = uow.ledger.balance_at(wallet, start_ns - 1)
        closing = uow.ledger.balance_at(wallet, end_ns - 1)
        moves, payees = repo.wallet_moves(wallet, start_ns, end_ns, BillingCode.ENERGY_BILL)
        at_close = repo.arrears_at(resident_id, month.end_s, end_ns, BILL_TRANSFER_BASE)
        now = repo.arrears_now(resident_id)
        names = {
            p: org.name
            for p in {r[0] for r in bill_rows} | {party_of_wallet(a) for a, _, _ in payees}
            if p and (org := uow.identity.organisation(p)) is not None
        }
    imports = [ImportLine(p, names.get(p), w, wh, amt, n) for p, w, wh, amt, n in bill_rows]
    exports = [ExportLine(w, e, c, m) for w, _, e, c, m in interval_rows if (e or c or m)]
    parties = [(party_of_wallet(account), amount, count) for account, amount, count in payees]
    payments = [PaymentLine(p, names.get(p), amount, count) for p, amount, count in parties]
    imported = sum(r[1] for r in interval_rows)
    billed_wh = sum(line.import_wh for line in imports)
    return MonthlyStatement(
        resident_id=resident_id,
        month=month.name,
        timezone=tariff.timezone,
        start_ts=month.start_s,
        end_ts=month.end_s,
        imports=imports,
        exports=exports,
        payments=payments,
        import_wh=imported,
        unbilled_import_wh=max(imported - billed_wh, 0),
        billed=sum(line.amount for line in imports),
        opening=opening,
        received=moves.received,
        paid=moves.paid_bills,
        other_debits=moves.other_debits,
        closing=closing,
        arrears_at_close=at_close[0],
        arrears_bills_at_close=at_close[1],
        arrears_now=now[0],
        arrears_bills_now=now[1],
        export_wh=sum(r[2] for r in interval_rows),
        carbon_g=sum(r[3] for r in interval_rows),
        credit_milli=sum(r[4] for r in interval_rows),
    )
