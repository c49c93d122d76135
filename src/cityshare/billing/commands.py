"""Commands of billing: price lists, provider choices, top-ups and pay-as-you-go bills."""

from __future__ import annotations

from dataclasses import dataclass

from cityshare.kernel.messages import Command


@dataclass(frozen=True, slots=True)
class SetPriceList(Command):
    """A new version of a provider's price list (`document` as sent: `prices`, paise per kWh
    per time-of-day window, and an optional `effective_from`); `set_by` names who set it."""

    provider_id: int
    document: object
    set_by: str


@dataclass(frozen=True, slots=True)
class ChooseProvider(Command):
    """A resident buys their imported energy from this provider from now on."""

    resident_id: int
    provider_id: int


@dataclass(frozen=True, slots=True)
class TopUpWallet(Command):
    """Credit `amount` paise to a resident's INR wallet from the platform's INR settlement
    account: fiat that reached the platform's bank under `reference` (its idempotency key)."""

    resident_id: int
    amount: int
    reference: str
    actor: str


@dataclass(frozen=True, slots=True)
class BillEnergy(Command):
    """Bill every meter interval recorded up to `up_to_ns` (default: now) and not billed yet,
    paying from residents' INR wallets what they can; `batch` intervals per transaction."""

    up_to_ns: int | None = None
    batch: int = 4096
