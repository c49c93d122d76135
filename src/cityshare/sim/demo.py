"""A small demo ledger for `cityshare serve --demo`: the city, a few residents, some activity.

Idempotent: ids are fixed, so seeding twice changes nothing (the second run answers `exists`).
"""

from __future__ import annotations

from cityshare.bootstrap import Platform
from cityshare.ledger import commands
from cityshare.ledger.model import AccountFlags, Ledger, NewAccount, Transfer, TransferFlags

WALLET = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
CITY_CREDIT, CITY_ENERGY, CITY_CARBON, PARKING_OPERATOR = 1, 2, 3, 4
RESIDENTS = {"asha": 101, "bilal": 102, "chen": 103}


def seed(platform: Platform) -> dict[str, int]:
    bus = platform.bus
    accounts = [
        NewAccount(CITY_CREDIT, Ledger.CREDIT, 1, owner="city"),
        NewAccount(CITY_ENERGY, Ledger.ENERGY, 1, owner="city"),
        NewAccount(CITY_CARBON, Ledger.CARBON, 1, owner="city"),
        NewAccount(PARKING_OPERATOR, Ledger.CREDIT, 3, owner="parking-operator"),
    ]
    for name, account_id in RESIDENTS.items():
        accounts.append(NewAccount(account_id, Ledger.CREDIT, 2, WALLET, owner=f"demo-{name}"))
        accounts.append(
            NewAccount(account_id + 100, Ledger.CARBON, 2, WALLET, owner=f"demo-{name}")
        )
    bus.handle(commands.CreateAccounts(accounts, atomic=False))
    credit = Ledger.CREDIT
    transfers = [
        # Rooftop solar export earns points and carbon credits (milli-points, grams CO2e).
        Transfer(1001, CITY_CREDIT, 101, 42_000, credit, 10),
        Transfer(1002, CITY_CARBON, 201, 3_444, Ledger.CARBON, 10),
        Transfer(1003, CITY_CREDIT, 102, 15_500, credit, 11),
        Transfer(1004, CITY_CREDIT, 103, 8_250, credit, 12),
        # Asha books a parking space: a hold, then the exact fee is posted.
        Transfer(
            1005, 101, PARKING_OPERATOR, 5_000, credit, 20, int(TransferFlags.PENDING), timeout=3600
        ),
        Transfer(
            1006, 0, 0, 3_500, 0, 20, int(TransferFlags.POST_PENDING_TRANSFER), pending_id=1005
        ),
        # Bilal pays Chen for energy: two linked legs that stand or fall together.
        Transfer(1007, 102, 103, 2_000, credit, 30, int(TransferFlags.LINKED)),
        Transfer(1008, 102, CITY_CREDIT, 100, credit, 31),
        # Chen holds points for a transit ride that has not ended yet.
        Transfer(
            1009, 103, CITY_CREDIT, 1_500, credit, 40, int(TransferFlags.PENDING), timeout=86_400
        ),
    ]
    outcome = bus.handle(commands.CreateTransfers(transfers, atomic=False))
    return {"created": outcome.created, "failed": len(outcome.failed)}
