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
   force at its start of the provider chosen then (`billing.model.charge`: whole paise, the
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

Top-ups of residents' INR wallets are `billing/top_ups.py`; the audit-log records are
`billing/records.py`, the checks of derived state `billing/checks.py`, the read side
`billing/queries.py`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from cityshare.billing import commands, records
from cityshare.billing.model import (
    NORMAL,
    BillingCode,
    BillingError,
    BillRow,
    ChoiceRow,
    Choices,
    Due,
    PriceBook,
    PriceListRow,
    RunRow,
    charge,
    parse_price_list,
    party_of_wallet,
    payment_transfer_id,
    plan_payments,
    price_windows,
    prices_json,
    window_price,
)
from cityshare.billing.queries import default_provider, price_versions, seller
from cityshare.billing.uow import BillingUnitOfWork
from cityshare.energy.model import OK
from cityshare.energy.tariff import Tariff
from cityshare.identity.organisations import is_organisation
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger.handlers import post_transfers
from cityshare.ledger.model import Ledger, Transfer

log = logging.getLogger(__name__)

DEFAULT_BATCH = 4096


# -- price lists and choices -----------------------------------------------------------------


def tariff_windows(tariff: Tariff) -> tuple[str, ...]:
    return price_windows([w.name for w in tariff.windows])


def set_price_list(
    cmd: commands.SetPriceList, uow: BillingUnitOfWork, *, tariff: Tariff
) -> PriceListRow:
    now_ns = uow.clock.now_ns()
    prices, effective = parse_price_list(
        cmd.document, tariff_windows(tariff), now_s=now_ns // 1_000_000_000
    )
    with uow:
        uow.ledger.lock_ledger()
        seller(uow, cmd.provider_id)
        repo = uow.billing
        row = PriceListRow(
            repo.next_price_list_id(), cmd.provider_id, effective, prices_json(prices),
            cmd.set_by[:200], now_ns,
        )  # fmt: skip
        repo.insert_price_list(row)
        uow.log.append([records.PRICE_LIST.of(row)])
        uow.commit()
    log.info("price list %d of provider %d from %d", row.id, row.provider_id, effective)
    return row


def choose_provider(cmd: commands.ChooseProvider, uow: BillingUnitOfWork) -> ChoiceRow:
    with uow:
        uow.ledger.lock_ledger()
        if is_organisation(cmd.resident_id) or uow.identity.resident(cmd.resident_id) is None:
            raise BillingError("not_found", "no such resident")
        seller(uow, cmd.provider_id)
        now_ns = uow.clock.now_ns()
        now_s = now_ns // 1_000_000_000
        book = PriceBook(price_versions(uow.billing.price_lists_of([cmd.provider_id])))
        if book.at(cmd.provider_id, now_s) is None:
            raise BillingError(
                "no_price_list", "this provider has no price list in force yet: choose another"
            )
        repo = uow.billing
        row = ChoiceRow(repo.next_choice_id(), cmd.resident_id, cmd.provider_id, now_s, now_ns)
        repo.insert_choice(row)
        uow.log.append([records.PROVIDER_CHOICE.of(row)])
        uow.commit()
    return row


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
    uow: BillingUnitOfWork,
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
        uow: BillingUnitOfWork,
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
            run_id = repo.next_run_id()
            bills = self._bills(billable, run_id)
            billed = sum(b[8] for b in bills)
            run = RunRow(run_id, heads[-1][0], len(bills), billed, self.now)
        transfers, paid_old, unpaid_new = self._payments(bills)
        if run is None and not transfers:
            return False
        if bills:
            repo.insert_bills(bills)
        leaves = [records.bill_entry(b) for b in bills]
        if run is not None:
            repo.insert_run(run)
            leaves.append(records.BILLING_RUN.of(run))
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
        can name (`ledger.ids`), so a refusal is a platform fault (a transfer planted in the
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
                refused[t.user_data] = party_of_wallet(t.debit_account_id)
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
        book = PriceBook(price_versions(repo.price_lists_of(set(providers) - {0})))
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
