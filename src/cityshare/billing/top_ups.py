"""Top-ups of residents' INR wallets: fiat received, credited from the INR settlement account.

**Top-ups** (`TopUpWallet`). Fiat reaches the platform's bank (a UPI payment, a transfer); a
platform operator then credits the resident's INR wallet from the **INR settlement account**,
account 904 (`INR_SETTLEMENT`, owner `platform:inr-settlement`, code 20 as the platform's other
accounts 901-903; opened by the first top-up). It mirrors the bank account: each top-up debits
it, so its balance is minus the paise the platform holds for residents and providers. It is
flagged `credits_must_not_exceed_debits`: whatever is ever paid back out through it (a
withdrawal) can never exceed what came in. A top-up names the bank's or UPI's transaction
reference, which is its idempotency key. Bank references (UTRs) are case-insensitive, so it is
stored and looked up in upper case (`utr-x` is `UTR-X`). The same reference again with the same
resident and amount answers the first top-up and posts nothing; with anything else it is refused
(`reference_reused`). Each top-up is a `top_ups` row and a log leaf, and its transfer (code
5002, user_data the top-up id) has id `2^62 + 2^60 + top-up id`, a range of its own; a
transfer id already taken there (not by a top-up) is skipped with an ERROR alarm, never a wedge.
If account 904 exists with other fields (a client opened it before it was reserved), top-ups are
refused as `settlement_account_unusable` (the API's 503) with an ERROR alarm until it is repaired.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from cityshare.billing import commands, records
from cityshare.billing.model import BillingCode, BillingError, TopUpRow
from cityshare.billing.uow import BillingUnitOfWork
from cityshare.identity.organisations import is_organisation
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger.handlers import open_accounts, post_transfers
from cityshare.ledger.ids import INR_SETTLEMENT, PLATFORM_ACCOUNT_CODE, TOP_UP_TRANSFERS
from cityshare.ledger.model import (
    MAX_INT,
    AccountFlags,
    CreateAccountResult,
    Ledger,
    NewAccount,
    Transfer,
    same_account,
)

log = logging.getLogger(__name__)

#: The platform's INR settlement account: the mirror of the platform's bank account.
SETTLEMENT_ACCOUNT = NewAccount(
    INR_SETTLEMENT,
    Ledger.INR,
    PLATFORM_ACCOUNT_CODE,
    int(AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
    "platform:inr-settlement",
)
TOP_UP_TRANSFER_BASE = TOP_UP_TRANSFERS.first
MAX_TOP_UP_ID = TOP_UP_TRANSFERS.last - TOP_UP_TRANSFER_BASE
#: A bank's or UPI's transaction reference (a UTR, say): what a top-up is known by.
TOP_UP_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")


def top_up_transfer_id(top_up_id: int) -> int:
    if not 0 < top_up_id <= MAX_TOP_UP_ID:
        raise ValueError("top-up ids are 1 … 2^60-1")
    return TOP_UP_TRANSFER_BASE + top_up_id


# -- top-ups -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopUpOutcome:
    top_up: TopUpRow
    #: False when the reference had topped up already (a retry): nothing was posted.
    created: bool


def top_up_wallet(cmd: commands.TopUpWallet, uow: BillingUnitOfWork) -> TopUpOutcome:
    """Credit a resident's INR wallet from the INR settlement account, once per reference
    (see the module docstring): one transaction holds the settlement account's opening, the
    transfer, the `top_ups` row and their log leaves."""
    if not isinstance(cmd.reference, str) or not TOP_UP_REFERENCE.fullmatch(cmd.reference):
        raise BillingError(
            "invalid_reference",
            "a reference is 1-64 letters, digits and . _ : / - (starting with a letter or digit)",
        )
    if isinstance(cmd.amount, bool) or not isinstance(cmd.amount, int):
        raise BillingError("invalid_amount", "an amount is a whole number of paise")
    if not 0 < cmd.amount <= MAX_INT:
        raise BillingError("invalid_amount", "an amount is 1 … 2^63-1 paise")
    with uow:
        last_timestamp = uow.ledger.lock_ledger()
        if is_organisation(cmd.resident_id) or uow.identity.resident(cmd.resident_id) is None:
            raise BillingError("not_found", "no such resident")
        repo = uow.billing
        # A bank's reference (a UTR) is case-insensitive: `utr-x` and `UTR-X` are one payment.
        reference = cmd.reference.upper()
        prior = repo.top_up_by_reference(reference)
        if prior is not None:
            if (prior.resident_id, prior.amount) != (cmd.resident_id, cmd.amount):
                raise BillingError(
                    "reference_reused",
                    f"reference {reference!r} already topped up another wallet or amount "
                    f"(top-up {prior.id}); a new payment needs its own reference",
                )
            return TopUpOutcome(prior, created=False)
        have = uow.ledger.load_accounts([INR_SETTLEMENT]).get(INR_SETTLEMENT)
        if have is None:
            opened = open_accounts(
                uow, [SETTLEMENT_ACCOUNT], last_timestamp=last_timestamp, atomic=True
            )
            if opened != [CreateAccountResult.CREATED]:
                raise RuntimeError(f"cannot open the INR settlement account: {opened}")
            last_timestamp = uow.ledger.lock_ledger()
        elif not same_account(have, SETTLEMENT_ACCOUNT):
            # Opened by a client before 904 was reserved (or by hand): no top-up can post until
            # an operator moves it aside. A fault of the platform's, not of the request.
            log.error(
                "ALARM: account %d is not the platform's INR settlement account (ledger %d, "
                "code %d, flags %d, owner %r): top-ups are refused until it is",
                have.id, have.ledger, have.code, have.flags, have.owner,
            )  # fmt: skip
            raise BillingError(
                "settlement_account_unusable",
                f"account {INR_SETTLEMENT} is not the platform's INR settlement account (it was "
                "opened with other fields); no top-up can be made until an operator repairs it",
            )
        top_up_id = _clear_top_up_id(uow, repo.next_top_up_id())
        wallet = wallet_account_id(cmd.resident_id, Ledger.INR)
        transfer = Transfer(
            top_up_transfer_id(top_up_id), INR_SETTLEMENT, wallet, cmd.amount, Ledger.INR,
            BillingCode.TOP_UP, 0, 0, 0, top_up_id,
        )  # fmt: skip
        outcome = post_transfers(uow, [transfer], last_timestamp=last_timestamp, atomic=True)
        if outcome.failed:
            _, result = outcome.failed[0]
            raise BillingError(
                "top_up_refused", f"the ledger refused the top-up transfer: {result.value}"
            )
        row = TopUpRow(
            top_up_id, reference, cmd.resident_id, cmd.amount, transfer.id,
            cmd.actor[:200], uow.clock.now_ns(),
        )  # fmt: skip
        repo.insert_top_up(row)
        uow.log.append([records.TOP_UP.of(row)])
        uow.commit()
    log.info("top-up %d: %d paise to resident %d", row.id, row.amount, row.resident_id)
    return TopUpOutcome(row, created=True)


def _clear_top_up_id(uow: BillingUnitOfWork, top_up_id: int) -> int:
    """The first top-up id from `top_up_id` whose transfer id is free.

    Top-up ids are handed out in order and their transfer ids minted from them, which no client
    can name now (`ledger.ids`); a transfer already there (a client's from before ids from 2^61
    were reserved, or planted in the store) would make the ledger refuse the top-up, and as the
    next top-up takes the same id again, every later one for every resident. So, as community
    payouts do, a taken id is an alarm (logged at ERROR with the ids) and the top-up is
    numbered after it instead, never a wedge.
    """
    first = top_up_id
    skipped: list[int] = []
    while True:
        window = [top_up_transfer_id(top_up_id + i) for i in range(64)]
        taken = uow.ledger.load_transfers(window)
        free = next((tid for tid in window if tid not in taken), None)
        skipped += [tid for tid in window if tid in taken and (free is None or tid < free)]
        if free is not None:
            top_up_id = free - TOP_UP_TRANSFER_BASE
            break
        top_up_id += len(window)
    if skipped:
        log.error(
            "ALARM: top-up transfer ids %s are taken by transfers no top-up made; the top-up is "
            "numbered %d instead of %d",
            skipped, top_up_id, first,
        )  # fmt: skip
    return top_up_id
