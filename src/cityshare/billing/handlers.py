"""Billing capability: providers' price lists, residents' provider choices, pay-as-you-go bills
of imported energy paid from the INR wallet, and the monthly statement.

**Price lists** (`SetPriceList`) are versions: each names the provider (an organisation of
kind `provider` or `community`), the paise per kWh of every time-of-day window, and the
instant (now or later, never earlier) it takes effect. **Choices** (`ChooseProvider`) take
effect at once, and only of a provider with a price list in force. A resident who never chose
is served by the default provider: the organisation `CITYSHARE_DEFAULT_PROVIDER` names, else
the first organisation of kind `provider` registered (the incumbent utility). Every version
and choice is kept and logged.

**Billing** (`BillEnergy`) takes the meter intervals recorded since the last run, in id order
(ids are handed out under the ledger lock, so a run never skips one recorded after it) and,
in batches of one transaction each:

1. bills every `ok` interval with imported energy of a resident's meter at the price list in
   force at its start of the provider chosen then (`domain.billing.charge`: whole paise, the
   remainder carried per resident and provider in the bill). An interval with no price in
   force (no default provider, or one without a price list yet) is recorded with provider 0
   and amount 0: price lists never apply retroactively, so that answer is final;
2. pays each resident's bills from their INR wallet to the provider's, oldest first (earlier
   arrears before new bills): transfer id `2^61 + bill id` (the bill id is the interval's, so
   a retry can never pay twice), code 5001, user_data the bill. A wallet cannot go below
   zero: the first bill it cannot pay in full and every later one wait in `energy_arrears`
   and are paid by a later run after the resident is topped up; other residents' bills post;
3. stores the bills, a run record (the last interval examined: the next run starts after it)
   and their log leaves, posts the payments, commits.

Transfer ids `2^61 … 2^62-1` are billing's (ingestion's postings use `2^62` and up).

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

import enum
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as json_string
from typing import Any

from cityshare.billing import commands
from cityshare.billing.model import (
    NORMAL,
    BillingError,
    Choices,
    Month,
    PriceBook,
    PriceVersion,
    charge,
    parse_price_list,
    plan_payments,
    price_windows,
    prices_json,
    window_price,
)
from cityshare.billing.repo import BillRow, ChoiceRow, Due, PriceListRow, RunRow, TopUpRow
from cityshare.billing.tables import billing_runs, price_lists, provider_choices, top_ups
from cityshare.energy.model import OK
from cityshare.energy.tariff import Tariff
from cityshare.identity.organisations import OrgKind, is_organisation
from cityshare.identity.repo import OrganisationRow
from cityshare.identity.residents import WALLET_BASE, wallet_account_id
from cityshare.kernel.uow import AbstractUnitOfWork
from cityshare.ledger.handlers import open_accounts, post_transfers
from cityshare.ledger.ids import (
    BILLING_TRANSFERS,
    INR_SETTLEMENT,
    PLATFORM_ACCOUNT_CODE,
    TOP_UP_TRANSFERS,
)
from cityshare.ledger.model import (
    MAX_INT,
    AccountFlags,
    CreateAccountResult,
    Ledger,
    NewAccount,
    Transfer,
    same_account,
)
from cityshare.tlog import entries

log = logging.getLogger(__name__)

#: Payments take ids `BILL_TRANSFER_BASE + bill id`, in the platform's range (ledger/ids.py).
BILL_TRANSFER_BASE = BILLING_TRANSFERS.first
MAX_BILL_ID = BILLING_TRANSFERS.last - BILL_TRANSFER_BASE
#: Organisations that sell energy to residents.
SELLER_KINDS = frozenset({OrgKind.PROVIDER.value, OrgKind.COMMUNITY.value})
DEFAULT_BATCH = 4096


class BillingCode(enum.IntEnum):
    ENERGY_BILL = 5001  # a resident pays a provider for energy imported in one interval
    TOP_UP = 5002  # the settlement account credits a resident's INR wallet (fiat received)


def payment_transfer_id(bill_id: int) -> int:
    if not 0 < bill_id <= MAX_BILL_ID:
        raise ValueError("bill ids are below 2^61")
    return BILL_TRANSFER_BASE + bill_id


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


def _party_of_wallet(account_id: int) -> int:
    return (account_id - WALLET_BASE) >> 3


# -- how each record becomes a log entry (and is checked again by `audit verify`) ------------

BILL_FIELDS = (
    "id", "resident_id", "provider_id", "price_list_id", "tod", "start_ts", "import_wh",
    "paise_per_kwh", "amount", "carry", "run_id", "at",
)  # fmt: skip


def price_list_entry(row: PriceListRow) -> bytes:
    return entries.encode_record(
        "price_list",
        {"id": row.id, "provider_id": row.provider_id, "effective_from": row.effective_from,
         "prices": row.prices, "set_by": row.set_by, "at": row.at},
    )  # fmt: skip


def choice_entry(row: ChoiceRow) -> bytes:
    return entries.encode_record(
        "provider_choice",
        {"id": row.id, "resident_id": row.resident_id, "provider_id": row.provider_id,
         "effective_from": row.effective_from, "at": row.at},
    )  # fmt: skip


def _bill_template() -> tuple[str, list[int]]:
    """`encode_record("energy_bill", ...)` as one %-template (billing encodes a record per
    interval, and json.dumps costs several µs each): keys sorted, "type" among them, every
    field an integer but `tod`. `audit verify` re-encodes stored bills with encode_record
    itself (`RECORD_ENCODERS`), so a difference would show."""
    names = sorted((*BILL_FIELDS, "type"))
    parts = []
    for name in names:
        value = "%s" if name == "tod" else "%d"
        if name == "type":
            value = json_string("energy_bill")
        parts.append(f"{json_string(name)}:{value}")
    return "{" + ",".join(parts) + "}", [BILL_FIELDS.index(n) for n in names if n != "type"]


_BILL_TEMPLATE, _BILL_ORDER = _bill_template()
_TOD = BILL_FIELDS.index("tod")


def bill_entry(row: BillRow) -> bytes:
    values = [json_string(str(row[i])) if i == _TOD else row[i] for i in _BILL_ORDER]
    return (_BILL_TEMPLATE % tuple(values)).encode("ascii")


def top_up_entry(row: TopUpRow) -> bytes:
    return entries.encode_record(
        "top_up",
        {"id": row.id, "reference": row.reference, "resident_id": row.resident_id,
         "amount": row.amount, "transfer_id": row.transfer_id, "actor": row.actor, "at": row.at},
    )  # fmt: skip


def run_entry(row: RunRow) -> bytes:
    return entries.encode_record(
        "billing_run",
        {"id": row.id, "through_id": row.through_id, "bills": row.bills, "billed": row.billed,
         "at": row.at},
    )  # fmt: skip


#: JSON entry type -> (table, how a stored row of it is encoded). `audit verify` walks this.
RECORD_ENCODERS: dict[str, tuple[str, Callable[[Mapping[str, Any]], bytes]]] = {
    "price_list": ("price_lists", lambda r: price_list_entry(PriceListRow(**r))),
    "provider_choice": ("provider_choices", lambda r: choice_entry(ChoiceRow(**r))),
    # The reference encoding (what `bill_entry` must match).
    "energy_bill": (
        "energy_bills",
        lambda r: entries.encode_record("energy_bill", {f: r[f] for f in BILL_FIELDS}),
    ),
    "billing_run": ("billing_runs", lambda r: run_entry(RunRow(**r))),
    "top_up": ("top_ups", lambda r: top_up_entry(TopUpRow(**r))),
}


def derived_problems(
    uow: AbstractUnitOfWork, *, limit: int = 100
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


# -- top-ups -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TopUpOutcome:
    top_up: TopUpRow
    #: False when the reference had topped up already (a retry): nothing was posted.
    created: bool


def top_up_wallet(cmd: commands.TopUpWallet, uow: AbstractUnitOfWork) -> TopUpOutcome:
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
        top_up_id = _clear_top_up_id(uow, repo.next_id(top_ups))
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
        uow.log.append([top_up_entry(row)])
        uow.commit()
    log.info("top-up %d: %d paise to resident %d", row.id, row.amount, row.resident_id)
    return TopUpOutcome(row, created=True)


def _clear_top_up_id(uow: AbstractUnitOfWork, top_up_id: int) -> int:
    """The first top-up id from `top_up_id` whose transfer id is free.

    Top-up ids are handed out in order and their transfer ids minted from them, which no client
    can name now (`domain.ids`); a transfer already there (a client's from before ids from 2^61
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


# -- price lists and choices -----------------------------------------------------------------


def tariff_windows(tariff: Tariff) -> tuple[str, ...]:
    return price_windows([w.name for w in tariff.windows])


def _seller(uow: AbstractUnitOfWork, org_id: int) -> OrganisationRow:
    org = uow.identity.organisation(org_id) if is_organisation(org_id) else None
    if org is None:
        raise BillingError("not_found", "no such organisation")
    if org.kind not in SELLER_KINDS:
        raise BillingError(
            "not_a_provider", f"a {org.kind} does not sell energy (a provider or community does)"
        )
    return org


def set_price_list(
    cmd: commands.SetPriceList, uow: AbstractUnitOfWork, *, tariff: Tariff
) -> PriceListRow:
    now_ns = uow.clock.now_ns()
    prices, effective = parse_price_list(
        cmd.document, tariff_windows(tariff), now_s=now_ns // 1_000_000_000
    )
    with uow:
        uow.ledger.lock_ledger()
        _seller(uow, cmd.provider_id)
        repo = uow.billing
        row = PriceListRow(
            repo.next_id(price_lists), cmd.provider_id, effective, prices_json(prices),
            cmd.set_by[:200], now_ns,
        )  # fmt: skip
        repo.insert_price_list(row)
        uow.log.append([price_list_entry(row)])
        uow.commit()
    log.info("price list %d of provider %d from %d", row.id, row.provider_id, effective)
    return row


def choose_provider(cmd: commands.ChooseProvider, uow: AbstractUnitOfWork) -> ChoiceRow:
    with uow:
        uow.ledger.lock_ledger()
        if is_organisation(cmd.resident_id) or uow.identity.resident(cmd.resident_id) is None:
            raise BillingError("not_found", "no such resident")
        _seller(uow, cmd.provider_id)
        now_ns = uow.clock.now_ns()
        now_s = now_ns // 1_000_000_000
        book = PriceBook(_versions(uow.billing.price_lists_of([cmd.provider_id])))
        if book.at(cmd.provider_id, now_s) is None:
            raise BillingError(
                "no_price_list", "this provider has no price list in force yet: choose another"
            )
        repo = uow.billing
        row = ChoiceRow(
            repo.next_id(provider_choices), cmd.resident_id, cmd.provider_id, now_s, now_ns
        )
        repo.insert_choice(row)
        uow.log.append([choice_entry(row)])
        uow.commit()
    return row


def _versions(rows: list[PriceListRow]) -> list[PriceVersion]:
    return [PriceVersion(r.id, r.provider_id, r.effective_from, json.loads(r.prices)) for r in rows]


def default_provider(uow: AbstractUnitOfWork, setting: int | None) -> int | None:
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


# -- billing ---------------------------------------------------------------------------------


@dataclass(slots=True)
class BillingOutcome:
    #: Meter intervals examined (every status) and bills written.
    examined: int = 0
    bills: int = 0
    #: Paise billed, and bills with no price in force (recorded at 0).
    billed: int = 0
    unpriced: int = 0
    #: Bills paid (earlier arrears included) and their paise.
    paid_bills: int = 0
    paid: int = 0
    #: Bills left unpaid by this run (new arrears).
    unpaid_bills: int = 0
    batches: int = 0
    #: Residents whose wallets could not pay everything due.
    short: set[int] = field(default_factory=set)


def bill_energy(
    cmd: commands.BillEnergy,
    uow: AbstractUnitOfWork,
    *,
    default_provider_setting: int | None = None,
) -> BillingOutcome:
    if cmd.batch < 1:
        raise ValueError("a batch holds at least one interval")
    outcome = BillingOutcome()
    first = True
    while True:
        with uow:
            last_ts = uow.ledger.lock_ledger()
            up_to = uow.clock.now_ns() if cmd.up_to_ns is None else cmd.up_to_ns
            more = _Batch(uow, outcome, default_provider_setting, first).run(
                up_to, cmd.batch, last_ts
            )
        first = False
        if not more:
            break
    if outcome.bills or outcome.paid_bills:
        log.info(
            "billed %d intervals (%d paise), paid %d bills (%d paise); %d left unpaid",
            outcome.bills, outcome.billed, outcome.paid_bills, outcome.paid,
            outcome.unpaid_bills,
        )  # fmt: skip
    return outcome


class _Batch:
    def __init__(
        self,
        uow: AbstractUnitOfWork,
        outcome: BillingOutcome,
        default_setting: int | None,
        retry_arrears: bool,
    ) -> None:
        self.uow = uow
        self.repo = uow.billing
        self.outcome = outcome
        self.default_setting = default_setting
        self.retry_arrears = retry_arrears
        self.now = uow.clock.now_ns()

    def run(self, up_to_ns: int, batch: int, last_ts: int) -> bool:
        """Bill and pay one batch (the caller's transaction); True if more may be waiting."""
        repo = self.repo
        previous = repo.last_run()
        heads = repo.intervals_after(previous.through_id if previous else 0, batch)
        full = len(heads) == batch
        for i, head in enumerate(heads):
            if head[6] > up_to_ns:
                heads = heads[:i]
                full = False
                break
        billable = [h for h in heads if h[2] == OK and h[5] > 0 and not is_organisation(h[1])]
        bills: list[BillRow] = []
        run: RunRow | None = None
        if heads:
            run_id = repo.next_id(billing_runs)
            bills = self._bills(billable, run_id)
            billed = sum(b[8] for b in bills)
            run = RunRow(run_id, heads[-1][0], len(bills), billed, self.now)
        transfers, paid_old, unpaid_new = self._payments(bills)
        if run is None and not transfers:
            return False
        if bills:
            repo.insert_bills(bills)
        leaves = [bill_entry(b) for b in bills]
        if run is not None:
            repo.insert_run(run)
            leaves.append(run_entry(run))
        self.uow.log.append(leaves)
        if transfers:
            refused = self._post(transfers, last_ts)
            if refused:
                # A refused earlier bill stays in arrears; a refused new one joins them.
                transfers = [t for t in transfers if t.user_data not in refused]
                earlier = set(paid_old)
                unpaid_new += [(b, r) for b, r in refused.items() if b not in earlier]
                paid_old = [b for b in paid_old if b not in refused]
        repo.add_arrears(unpaid_new)
        repo.remove_arrears(paid_old)
        self.uow.commit()
        o = self.outcome
        o.batches += 1
        o.examined += len(heads)
        o.bills += len(bills)
        o.billed += sum(b[8] for b in bills)
        o.unpriced += sum(1 for b in bills if b[3] == 0)
        o.paid_bills += len(transfers)
        o.paid += sum(t.amount for t in transfers)
        o.unpaid_bills += len(unpaid_new)
        return full

    def _post(self, transfers: list[Transfer], last_ts: int) -> dict[int, int]:
        """Post the payments; returns the bills (bill id: resident) whose payment the ledger
        refused. Their ids are minted from the bill ids (`payment_transfer_id`), which no client
        can name (`domain.ids`), so a refusal is a platform fault (a transfer planted in the
        store, a bug): an alarm, never a wedge. Those bills are logged at ERROR and left in
        arrears (`audit verify` then reports them, their payment id being taken); every other
        payment is posted, and billing goes on for everyone else.
        """
        refused: dict[int, int] = {}
        while transfers:
            result = post_transfers(self.uow, transfers, last_timestamp=last_ts, atomic=True)
            if not result.failed:
                break
            # Nothing was written (atomic); each round drops at least one payment.
            for i, reason in result.failed:
                t = transfers[i]
                refused[t.user_data] = _party_of_wallet(t.debit_account_id)
                log.error(
                    "ALARM: the payment of bill %d was refused by the ledger (transfer %d: %s); "
                    "the bill stays in arrears, other bills are paid; `cityshare audit verify` "
                    "lists it",
                    t.user_data, t.id, reason.value,
                )  # fmt: skip
            transfers = [t for t in transfers if t.user_data not in refused]
        return refused

    def _bills(self, billable: list[Any], run_id: int) -> list[BillRow]:
        if not billable:
            return []
        repo = self.repo
        residents = {h[1] for h in billable}
        choices = Choices(
            [(c.resident_id, c.provider_id, c.effective_from, c.id)
             for c in repo.choices_of(residents)]
        )  # fmt: skip
        default = default_provider(self.uow, self.default_setting)
        providers = [choices.at(h[1], h[3]) or default or 0 for h in billable]
        book = PriceBook(_versions(repo.price_lists_of(set(providers) - {0})))
        carries = repo.carries({(h[1], p) for h, p in zip(billable, providers, strict=True)})
        now = self.now
        bills: list[BillRow] = []
        for head, provider in zip(billable, providers, strict=True):
            interval_id, resident, _, start_ts, tod, import_wh, _ = head
            key = (resident, provider)
            carry = carries.get(key, 0)
            version = book.at(provider, start_ts) if provider else None
            if version is None:
                # Recorded as energy no one priced (not charged); the carry stays put.
                bills.append(
                    (interval_id, resident, 0, 0, tod, start_ts, import_wh, 0, 0, 0, run_id, now)
                )
                continue
            price = window_price(version.prices, tod or NORMAL)
            amount, carry = charge(import_wh, price, carry)
            version_id = version.id
            carries[key] = carry
            bills.append(
                (interval_id, resident, provider, version_id, tod, start_ts, import_wh, price,
                 amount, carry, run_id, now)
            )  # fmt: skip
        return bills

    def _payments(
        self, bills: list[BillRow]
    ) -> tuple[list[Transfer], list[int], list[tuple[int, int]]]:
        """The payments to post, the earlier arrears they settle, and the new bills left
        unpaid ((bill, resident) pairs)."""
        repo = self.repo
        new: dict[int, list[Due]] = {}
        for b in bills:
            if b[8] > 0:
                new.setdefault(b[1], []).append(Due(b[0], b[2], b[8]))
        candidates = set(new)
        if self.retry_arrears:
            candidates |= set(repo.residents_in_arrears())
        if not candidates:
            return [], [], []
        wallets = {r: wallet_account_id(r, Ledger.INR) for r in candidates}
        accounts = self.uow.ledger.load_accounts(wallets.values())
        available = {r: (a.available if (a := accounts.get(w)) else 0) for r, w in wallets.items()}
        # A resident's earlier arrears are paid first, and they all wait while the wallet
        # cannot pay the oldest: only then are they all read.
        oldest = repo.oldest_arrears([r for r in candidates if available[r] > 0])
        old = repo.arrears_of([r for r, d in oldest.items() if d.amount <= available[r]])
        transfers: list[Transfer] = []
        paid_old: list[int] = []
        unpaid_new: list[tuple[int, int]] = []
        for resident in sorted(candidates):
            earlier = old.get(resident, [])
            due = earlier + new.get(resident, [])
            if not due:
                continue
            if not earlier and resident in oldest:
                # Older arrears the wallet cannot pay yet: new bills queue behind them.
                unpaid_new += [(d.bill_id, resident) for d in due]
                self.outcome.short.add(resident)
                continue
            if wallets[resident] not in accounts:
                raise RuntimeError(f"resident {resident} has no INR wallet")
            by_id = {d.bill_id: d for d in due}
            paid, unpaid = plan_payments(available[resident], [(d.bill_id, d.amount) for d in due])
            earlier_ids = {d.bill_id for d in earlier}
            for bill_id, amount in paid:
                d = by_id[bill_id]
                transfers.append(
                    Transfer(
                        payment_transfer_id(bill_id),
                        wallets[resident],
                        wallet_account_id(d.provider_id, Ledger.INR),
                        amount,
                        int(Ledger.INR),
                        int(BillingCode.ENERGY_BILL),
                        user_data=bill_id,
                    )
                )
                if bill_id in earlier_ids:
                    paid_old.append(bill_id)
            left = [(bill_id, resident) for bill_id, _ in unpaid if bill_id not in earlier_ids]
            unpaid_new += left
            if unpaid:
                self.outcome.short.add(resident)
            elif resident in self.outcome.short:
                self.outcome.short.discard(resident)
        return transfers, paid_old, unpaid_new


# -- queries (read side) ---------------------------------------------------------------------


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


def _prices_of(uow: AbstractUnitOfWork, org: OrganisationRow, now_s: int) -> ProviderPrices:
    rows = uow.billing.price_lists_of([org.id])
    book = PriceBook(_versions(rows))
    by_id = {r.id: r for r in rows}
    current = book.at(org.id, now_s)
    return ProviderPrices(
        org,
        price_list_view(by_id[current.id]) if current else None,
        [price_list_view(by_id[v.id]) for v in book.upcoming(org.id, now_s)],
    )


def provider_prices(uow: AbstractUnitOfWork, org_id: int) -> ProviderPrices:
    """A provider's price list in force now and those set to take effect later."""
    with uow:
        org = _seller(uow, org_id)
        return _prices_of(uow, org, uow.clock.now_ns() // 1_000_000_000)


@dataclass(frozen=True, slots=True)
class ProviderChoice:
    provider: ProviderPrices | None
    #: "chosen" (since `since`), or "default" (never chose: the platform's default provider).
    basis: str
    since: int | None


def current_provider(
    uow: AbstractUnitOfWork, resident_id: int, *, default_setting: int | None
) -> ProviderChoice:
    with uow:
        now_s = uow.clock.now_ns() // 1_000_000_000
        rows = uow.billing.choices_of([resident_id])
        chosen = [c for c in rows if c.effective_from <= now_s]
        if chosen:
            latest = max(chosen, key=lambda c: (c.effective_from, c.id))
            org = _seller(uow, latest.provider_id)
            return ProviderChoice(_prices_of(uow, org, now_s), "chosen", latest.effective_from)
        default = default_provider(uow, default_setting)
        if default is None:
            return ProviderChoice(None, "default", None)
        return ProviderChoice(_prices_of(uow, _seller(uow, default), now_s), "default", None)


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
    uow: AbstractUnitOfWork, resident_id: int, month: Month, *, tariff: Tariff
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
            for p in {r[0] for r in bill_rows} | {_party_of_wallet(a) for a, _, _ in payees}
            if p and (org := uow.identity.organisation(p)) is not None
        }
    imports = [ImportLine(p, names.get(p), w, wh, amt, n) for p, w, wh, amt, n in bill_rows]
    exports = [ExportLine(w, e, c, m) for w, _, e, c, m in interval_rows if (e or c or m)]
    parties = [(_party_of_wallet(account), amount, count) for account, amount, count in payees]
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
