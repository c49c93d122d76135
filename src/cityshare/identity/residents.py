"""Residents on the platform: their wallet accounts and what their enrolment may carry.

A resident is known by an internal number and, to operators, by the virtual id (VID) of their
latest enrolment; the platform never holds a national id (DESIGN.md §3).
"""

from __future__ import annotations

import re

from cityshare.ledger.ids import WALLET_ACCOUNTS
from cityshare.ledger.model import AccountFlags, Ledger, NewAccount

#: Wallet account ids live in the platform's own range (ledger/ids.py), which clients may not
#: open accounts in: no one can take a resident's wallet id before they enrol.
WALLET_BASE = WALLET_ACCOUNTS.first
WALLET_CODE = 10
#: Every resident holds one wallet per ledger; none but the energy record may go below zero.
WALLET_LEDGERS: tuple[Ledger, ...] = (Ledger.CREDIT, Ledger.ENERGY, Ledger.CARBON, Ledger.INR)
#: Parties (residents and organisations, see `identity.organisations`) share one id space:
#: residents are numbered from 1, organisations from ORG_ID_BASE.
ORG_ID_BASE = 1 << 57
MAX_RESIDENT_ID = ORG_ID_BASE - 1
MAX_PARTY_ID = (1 << 58) - 1


def owner_of(party_id: int) -> str:
    """The `owner` an account of this party carries: `resident:N` or `org:N`."""
    return f"org:{party_id}" if party_id >= ORG_ID_BASE else f"resident:{party_id}"


_RESIDENT_OWNER = re.compile(r"resident:([1-9][0-9]{0,17})")


def resident_of(owner: str | None) -> int | None:
    """The resident an account belongs to, from its owner; None for platform accounts and for
    an owner that names no possible resident (ASCII digits only, 1 … MAX_RESIDENT_ID: an owner
    is also a search term from outside, and `str.isdigit` takes '²' and '٣')."""
    found = _RESIDENT_OWNER.fullmatch(owner) if owner is not None else None
    if found is None:
        return None
    resident_id = int(found.group(1))
    return resident_id if resident_id <= MAX_RESIDENT_ID else None


def wallet_account_id(party_id: int, ledger: Ledger) -> int:
    """A party's (a resident's or an organisation's) wallet on `ledger`."""
    if not 1 <= party_id <= MAX_PARTY_ID:
        raise ValueError("party ids are 1 … 2^58-1")
    return WALLET_BASE | (party_id << 3) | int(ledger)


def wallet_accounts(party_id: int) -> list[NewAccount]:
    no_overdraft = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    return [
        NewAccount(
            wallet_account_id(party_id, ledger),
            ledger,
            WALLET_CODE,
            0 if ledger == Ledger.ENERGY else no_overdraft,
            owner_of(party_id),
        )
        for ledger in WALLET_LEDGERS
    ]
