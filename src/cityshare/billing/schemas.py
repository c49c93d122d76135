"""Bodies of the billing API: price lists, a resident's provider, the monthly statement.

Amounts are integer paise, energy integer Wh, carbon integer grams, points integer
milli-points: no floats anywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from cityshare.api.responses import Strict
from cityshare.billing.queries import (
    MonthlyStatement,
    PriceListView,
    ProviderChoice,
    ProviderPrices,
)
from cityshare.billing.top_ups import TopUpOutcome
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger.ids import INR_SETTLEMENT
from cityshare.ledger.model import MAX_INT, Ledger


class PriceListIn(BaseModel):
    """A new version of the price list. Checked field by field by the billing rules, so that
    anything else (a fixed or subscription charge, a float, an unknown window) is refused
    with the reason."""

    # Extra fields reach the billing rules, which refuse each with its reason.
    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{"prices": {"normal": 650, "solar": 480, "peak": 790}}],
            "additionalProperties": False,
        },
    )

    prices: Any = Field(
        description="Paise per kWh (integers) for each time-of-day window of the platform "
        "tariff: `normal` and the tariff's windows (e.g. `solar`, `peak`). Nothing else: "
        "pay-as-you-go has no fixed, standing or subscription charges."
    )
    effective_from: Any = Field(
        None, description="Unix seconds it takes effect (now or later; default: now)."
    )


class PriceListOut(BaseModel):
    id: int = Field(description="The version (price lists are never changed, only succeeded).")
    provider_id: int
    effective_from: int = Field(description="Unix seconds it takes (or took) effect.")
    prices: dict[str, int] = Field(description="Paise per kWh by time-of-day window.")
    set_by: str
    at: int = Field(description="When it was set (ns since the epoch).")

    @classmethod
    def of(cls, view: PriceListView) -> PriceListOut:
        return cls(
            id=view.id,
            provider_id=view.provider_id,
            effective_from=view.effective_from,
            prices=view.prices,
            set_by=view.set_by,
            at=view.at,
        )


class ProviderPricesOut(BaseModel):
    provider_id: int
    name: str
    kind: str
    current: PriceListOut | None = Field(description="The price list in force now.")
    upcoming: list[PriceListOut] = Field(description="Versions set to take effect later.")

    @classmethod
    def of(cls, prices: ProviderPrices) -> ProviderPricesOut:
        return cls(
            provider_id=prices.provider.id,
            name=prices.provider.name,
            kind=prices.provider.kind,
            current=PriceListOut.of(prices.current) if prices.current else None,
            upcoming=[PriceListOut.of(v) for v in prices.upcoming],
        )


class ChooseProviderIn(Strict):
    provider_id: StrictInt = Field(description="A provider or community asset with a price list.")


class ProviderChoiceOut(BaseModel):
    basis: str = Field(description="`chosen` by you, or the platform's `default` provider.")
    since: int | None = Field(description="Unix seconds your choice took effect.")
    provider: ProviderPricesOut | None = Field(
        description="Who sells you energy and at what prices (none: no provider yet)."
    )

    @classmethod
    def of(cls, choice: ProviderChoice) -> ProviderChoiceOut:
        return cls(
            basis=choice.basis,
            since=choice.since,
            provider=ProviderPricesOut.of(choice.provider) if choice.provider else None,
        )


class TopUpIn(Strict):
    amount: StrictInt = Field(ge=1, le=MAX_INT, description="Paise to credit (whole paise).")
    reference: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$",
        description="The bank's or UPI's transaction reference of the payment received: the "
        "top-up's idempotency key (the same reference again tops up nothing). Case-insensitive, "
        "as bank references (UTRs) are: stored and answered in upper case.",
    )


class TopUpOut(BaseModel):
    id: int = Field(description="The top-up (a leaf of the audit log).")
    reference: str
    amount: int = Field(description="Paise credited.")
    transfer_id: int = Field(description="The ledger transfer that credited the wallet.")
    debit_account_id: int = Field(description="The platform's INR settlement account (904).")
    credit_account_id: int = Field(description="The resident's INR wallet.")
    at: int = Field(description="When it was recorded (unix ns).")
    created: bool = Field(description="False when this reference had topped up before.")

    @classmethod
    def of(cls, outcome: TopUpOutcome) -> TopUpOut:
        row = outcome.top_up
        return cls(
            id=row.id,
            reference=row.reference,
            amount=row.amount,
            transfer_id=row.transfer_id,
            debit_account_id=INR_SETTLEMENT,
            credit_account_id=wallet_account_id(row.resident_id, Ledger.INR),
            at=row.at,
            created=outcome.created,
        )


class ImportOut(BaseModel):
    provider_id: int = Field(description="0: no price list was in force (not charged).")
    provider: str | None
    window: str
    import_wh: int
    amount: int = Field(description="Paise billed.")
    bills: int = Field(description="Intervals billed.")


class ExportOut(BaseModel):
    window: str
    export_wh: int
    carbon_g: int
    credit_milli: int = Field(description="Smart credit milli-points credited (1000 = 1 point).")


class PaymentOut(BaseModel):
    provider_id: int
    provider: str | None
    amount: int = Field(description="Paise paid from your INR wallet in the month.")
    count: int


class WalletMonthOut(BaseModel):
    opening: int = Field(description="INR wallet balance (paise) at the month's start.")
    received: int = Field(description="Top-ups and other money in.")
    paid: int = Field(description="Energy bills paid.")
    other_debits: int = Field(description="Anything else that left the wallet.")
    closing: int = Field(description="opening + received - paid - other_debits.")


class ArrearsOut(BaseModel):
    at_close: int = Field(
        description="Paise owed for energy imported up to the month's end, unpaid by then."
    )
    bills_at_close: int
    now: int = Field(description="Paise owed now (paid automatically after a top-up).")
    bills_now: int


class TotalsOut(BaseModel):
    import_wh: int
    unbilled_import_wh: int = Field(description="Imported but not billed yet.")
    billed: int = Field(description="Paise billed for the month's imports.")
    paid: int
    export_wh: int
    carbon_g: int
    credit_milli: int


class MonthlyStatementOut(BaseModel):
    month: str
    timezone: str
    start_ts: int = Field(description="Local midnight of the 1st (unix seconds).")
    end_ts: int
    imports: list[ImportOut] = Field(description="Per provider and time-of-day window.")
    exports: list[ExportOut] = Field(description="Per time-of-day window.")
    payments: list[PaymentOut]
    wallet: WalletMonthOut
    arrears: ArrearsOut
    totals: TotalsOut

    @classmethod
    def of(cls, s: MonthlyStatement) -> MonthlyStatementOut:
        return cls(
            month=s.month,
            timezone=s.timezone,
            start_ts=s.start_ts,
            end_ts=s.end_ts,
            imports=[
                ImportOut(
                    provider_id=i.provider_id,
                    provider=i.provider,
                    window=i.window,
                    import_wh=i.import_wh,
                    amount=i.amount,
                    bills=i.bills,
                )
                for i in s.imports
            ],
            exports=[
                ExportOut(
                    window=e.window,
                    export_wh=e.export_wh,
                    carbon_g=e.carbon_g,
                    credit_milli=e.credit_milli,
                )
                for e in s.exports
            ],
            payments=[
                PaymentOut(
                    provider_id=p.provider_id, provider=p.provider, amount=p.amount, count=p.count
                )
                for p in s.payments
            ],
            wallet=WalletMonthOut(
                opening=s.opening,
                received=s.received,
                paid=s.paid,
                other_debits=s.other_debits,
                closing=s.closing,
            ),
            arrears=ArrearsOut(
                at_close=s.arrears_at_close,
                bills_at_close=s.arrears_bills_at_close,
                now=s.arrears_now,
                bills_now=s.arrears_bills_now,
            ),
            totals=TotalsOut(
                import_wh=s.import_wh,
                unbilled_import_wh=s.unbilled_import_wh,
                billed=s.billed,
                paid=s.paid,
                export_wh=s.export_wh,
                carbon_g=s.carbon_g,
                credit_milli=s.credit_milli,
            ),
        )


def statement_json(s: MonthlyStatement) -> dict[str, Any]:
    """The statement as the API answers it (the CLI prints the same with --json)."""
    return MonthlyStatementOut.of(s).model_dump()
