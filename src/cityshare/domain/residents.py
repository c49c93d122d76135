"""Residents on the platform: their wallet accounts and what their enrolment may carry.

A resident is known by an internal number and, to operators, by the virtual id (VID) of their
latest enrolment; the platform never holds a national id (DESIGN.md §3).
"""

from __future__ import annotations

from cityshare.domain.ledger import AccountFlags, Ledger, NewAccount

#: Wallet account ids live in their own range, above every id a client would choose by hand.
WALLET_BASE = 1 << 62
WALLET_CODE = 10
#: Every resident holds one wallet per ledger; none but the energy record may go below zero.
WALLET_LEDGERS: tuple[Ledger, ...] = (Ledger.CREDIT, Ledger.ENERGY, Ledger.CARBON, Ledger.INR)
MAX_RESIDENT_ID = (1 << 58) - 1


def owner_of(resident_id: int) -> str:
    """The `owner` an account of this resident carries."""
    return f"resident:{resident_id}"


def resident_of(owner: str | None) -> int | None:
    """The resident an account belongs to, from its owner; None for platform accounts."""
    if owner is None or not owner.startswith("resident:"):
        return None
    tail = owner.removeprefix("resident:")
    return int(tail) if tail.isdigit() else None


def wallet_account_id(resident_id: int, ledger: Ledger) -> int:
    if not 1 <= resident_id <= MAX_RESIDENT_ID:
        raise ValueError("resident ids are 1 … 2^58-1")
    return WALLET_BASE | (resident_id << 3) | int(ledger)


def wallet_accounts(resident_id: int) -> list[NewAccount]:
    no_overdraft = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    return [
        NewAccount(
            wallet_account_id(resident_id, ledger),
            ledger,
            WALLET_CODE,
            0 if ledger == Ledger.ENERGY else no_overdraft,
            owner_of(resident_id),
        )
        for ledger in WALLET_LEDGERS
    ]
