"""Who may choose which ledger id: clients below 2^61, the platform from 2^61 up.

A transfer's id is its idempotency key (DESIGN.md §2): the same id with other fields is refused
as `exists_with_different_fields`. The platform mints ids of its own (a bill's payment, an
interval's credits, a community payout, a party's wallet) by formula, so that a retry can never
post twice; if a client could take one of those ids first, the platform's posting would be
refused for ever (a wedge). So the id space is split once, here, and every range the platform
mints from derives from these constants:

| ids | whose |
| --- | --- |
| 1 … 2^61-1 | clients (`POST /api/v1/accounts`, `POST /api/v1/transfers`: their own choice) |
| 2^61 … 2^63-1 | the platform's (refused as `reserved_id` at every door a client can name one) |

Inside the reserved range, transfers (billing, energy, community) and accounts (wallets) each
have disjoint ranges (tests/unit/test_transfer_ids.py checks that they are inside the reserved
range and never meet). Accounts and transfers are separate id spaces, so a wallet and an energy
posting may share a number.

The platform's named accounts, 901-904 (energy's issuance and grid accounts, the INR
settlement account), predate this rule and stay where they are (existing ledgers hold them);
they are reserved by name instead: no client may open them or name them in a transfer. Every
other id below 2^61 is a client's to open. They are defined here, once, with their account code,
and each capability that posts to them imports them from here.
"""

from __future__ import annotations

from typing import NamedTuple

from cityshare.ledger.model import MAX_INT as MAX_ID

#: The first id the platform keeps for itself.
PLATFORM_ID_BASE = 1 << 61
#: The largest id a client may choose, for an account or a transfer.
MAX_CLIENT_ID = PLATFORM_ID_BASE - 1


class IdRange(NamedTuple):
    """The ids `first` … `last`, both included."""

    first: int
    last: int

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self.first <= value <= self.last


CLIENT_IDS = IdRange(1, MAX_CLIENT_ID)
RESERVED_IDS = IdRange(PLATFORM_ID_BASE, MAX_ID)

# -- the platform's transfer ranges (each inside RESERVED_IDS, none meeting another) -----------

#: Billing: `first + bill id` pays a bill (billing/model.py).
BILLING_TRANSFERS = IdRange(PLATFORM_ID_BASE, 2 * PLATFORM_ID_BASE - 1)
#: Energy: `first | interval id << 2 | kind` credits an interval (energy/handlers.py).
ENERGY_TRANSFERS = IdRange(2 * PLATFORM_ID_BASE, 2 * PLATFORM_ID_BASE + (1 << 60) - 1)
#: Top-ups: `first + top-up id` credits a resident's INR wallet from the settlement account
#: (billing/top_ups.py).
TOP_UP_TRANSFERS = IdRange(ENERGY_TRANSFERS.last + 1, 2 * PLATFORM_ID_BASE + (1 << 61) - 1)
#: Community: `first | payout id << 1 | is carbon` pays a holder (community/handlers.py).
COMMUNITY_TRANSFERS = IdRange(2 * PLATFORM_ID_BASE | (3 << 60), MAX_ID)
PLATFORM_TRANSFER_RANGES = {
    "billing": BILLING_TRANSFERS,
    "energy": ENERGY_TRANSFERS,
    "top-ups": TOP_UP_TRANSFERS,
    "community": COMMUNITY_TRANSFERS,
}

# -- the platform's accounts -------------------------------------------------------------------

#: Wallets: `first | party id << 3 | ledger` (identity/residents.py).
WALLET_ACCOUNTS = IdRange(2 * PLATFORM_ID_BASE, MAX_ID)
#: The platform's named accounts, each opened on first use by the capability that posts to it.
#: Smart-credit issuance (CREDIT ledger; energy/handlers.py).
CREDIT_ISSUANCE = 901
#: The grid (ENERGY ledger; energy/handlers.py).
GRID_ENERGY = 902
#: Carbon-credit issuance (CARBON ledger; energy/handlers.py).
CARBON_ISSUANCE = 903
#: The INR settlement account, the mirror of the platform's bank account (billing/top_ups.py).
INR_SETTLEMENT = 904
#: The account code every named platform account carries.
PLATFORM_ACCOUNT_CODE = 20
#: The ids no client may open, debit or credit (`reserved_account_id`, ledger/handlers.py).
NAMED_PLATFORM_ACCOUNTS = frozenset({CREDIT_ISSUANCE, GRID_ENERGY, CARBON_ISSUANCE, INR_SETTLEMENT})


def reserved_transfer_id(transfer_id: int) -> bool:
    """Is this a transfer id only the platform may mint?"""
    return transfer_id > MAX_CLIENT_ID


def reserved_account_id(account_id: int) -> bool:
    """Is this an account id only the platform may open (its range, or a named account)?"""
    return account_id > MAX_CLIENT_ID or account_id in NAMED_PLATFORM_ACCOUNTS


RESERVED_MESSAGE = (
    f"ids from 2^61 ({PLATFORM_ID_BASE}) up are the platform's own; choose an id from 1 to "
    f"2^61-1 ({MAX_CLIENT_ID})"
)
RESERVED_ACCOUNT_MESSAGE = (
    RESERVED_MESSAGE + f", other than the platform's accounts {sorted(NAMED_PLATFORM_ACCOUNTS)}"
)
NAMED_ACCOUNT_MESSAGE = (
    f"accounts {sorted(NAMED_PLATFORM_ACCOUNTS)} are the platform's own: only its postings "
    "(energy credits, INR top-ups) debit or credit them"
)
