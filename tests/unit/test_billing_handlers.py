"""Price lists, provider choices and top-ups on an in-memory unit of work (no database):
versions and when they take effect, who may sell, a reference used twice, and that a refusal
writes nothing. The real-database tests (tests/integration/test_billing_service.py) stay the
proof that the store does the same."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Collection, Iterable, Sequence
from types import TracebackType
from typing import Any

import pytest

from cityshare.billing import handlers, records, top_ups
from cityshare.billing.commands import ChooseProvider, SetPriceList, TopUpWallet
from cityshare.billing.fake import FakeBillingRepository
from cityshare.billing.model import BillingCode, BillingError, ChoiceRow, PriceListRow, TopUpRow
from cityshare.energy.tariff import load_tariff
from cityshare.identity.model import OrganisationRow, ResidentRow
from cityshare.identity.organisations import OrgKind
from cityshare.identity.residents import ORG_ID_BASE, wallet_account_id
from cityshare.kernel.clock import ManualClock
from cityshare.ledger.ids import INR_SETTLEMENT
from cityshare.ledger.model import (
    AccountState,
    Ledger,
    NewAccount,
    PendingChange,
    PendingHold,
    TransferRecord,
)

TARIFF = load_tariff()
UTILITY = ORG_ID_BASE + 1
SOLAR = ORG_ID_BASE + 2  # a community asset: it sells too
OPERATOR = ORG_ID_BASE + 3
MISSING = ORG_ID_BASE + 4
ASHA, BALA = 1, 2
NOBODY = 3
DAY = 86_400
PRICES = {"normal": 650, "peak": 900, "solar": 300}


class FakeLedger:
    """Accounts and transfers in memory: what `open_accounts` and `post_transfers` reach."""

    def __init__(self) -> None:
        self.locks = 0
        self.last_timestamp = 0
        self.accounts: dict[int, AccountState] = {}
        self.transfers: dict[int, TransferRecord] = {}

    def lock_ledger(self) -> int:
        self.locks += 1
        return self.last_timestamp

    def set_last_timestamp(self, timestamp: int) -> None:
        self.last_timestamp = timestamp

    def load_accounts(self, ids: Collection[int]) -> dict[int, AccountState]:
        # Copies: the engine moves balances in place, and only `save_balances` stores them.
        return {i: dataclasses.replace(self.accounts[i]) for i in ids if i in self.accounts}

    def load_transfers(self, ids: Collection[int]) -> dict[int, TransferRecord]:
        return {i: self.transfers[i] for i in ids if i in self.transfers}

    def load_holds(self, ids: Collection[int]) -> dict[int, PendingHold]:
        assert not ids, "top-ups post no pending transfers"
        return {}

    def insert_accounts(self, new: Sequence[NewAccount], timestamp: int) -> None:
        for i, a in enumerate(new):
            assert a.id not in self.accounts
            self.accounts[a.id] = AccountState(*a, timestamp=timestamp + i)

    def insert_transfers(self, records: Sequence[TransferRecord]) -> None:
        for r in records:
            assert r.id not in self.transfers
            self.transfers[r.id] = r

    def insert_holds(self, holds: Sequence[PendingHold]) -> None:
        assert not holds

    def save_pending_changes(self, changes: Sequence[PendingChange]) -> None:
        assert not changes

    def save_balances(self, changed: Iterable[AccountState]) -> None:
        for a in changed:
            self.accounts[a.id] = dataclasses.replace(a)


class FakeIdentity:
    def __init__(self, organisations: list[OrganisationRow], residents: list[int]) -> None:
        self.orgs = {o.id: o for o in organisations}
        self.residents = {r: ResidentRow(r, f"pseudonym-{r}", "issuer", 0) for r in residents}

    def organisation(self, org_id: int) -> OrganisationRow | None:
        return self.orgs.get(org_id)

    def resident(self, resident_id: int) -> ResidentRow | None:
        return self.residents.get(resident_id)


class FakeLog:
    def __init__(self) -> None:
        self.leaves: list[bytes] = []

    def append(self, leaves: list[bytes]) -> None:
        self.leaves += leaves


class FakeUnitOfWork:
    """What the price list, choice and top-up handlers use of a unit of work (as in
    tests/unit/test_community_handlers.py); leaving the block without `commit` puts the
    billing repository, the ledger and the log back as they were (a rollback)."""

    def __init__(self) -> None:
        self.ledger = FakeLedger()
        self.identity = FakeIdentity(
            [
                OrganisationRow(UTILITY, OrgKind.PROVIDER.value, "Utility", None, 0),
                OrganisationRow(SOLAR, OrgKind.COMMUNITY.value, "Solar Park", None, 0),
                OrganisationRow(OPERATOR, OrgKind.OPERATOR.value, "Operator", None, 0),
            ],
            [ASHA, BALA],
        )
        for r in (ASHA, BALA):  # residents' wallets are opened at enrolment
            wallet = wallet_account_id(r, Ledger.INR)
            self.ledger.accounts[wallet] = AccountState(wallet, Ledger.INR, 10, 0, f"resident:{r}")
        self.billing = FakeBillingRepository()
        self.log = FakeLog()
        self.clock = ManualClock()
        self.commits = 0
        self._saved: tuple[Any, ...] | None = None

    def _state(self) -> tuple[Any, ...]:
        b, ledger = self.billing, self.ledger
        return (
            b.price_lists, b.choices, b.top_ups, ledger.accounts, ledger.transfers,
            ledger.last_timestamp, self.log.leaves,
        )  # fmt: skip

    def __enter__(self) -> FakeUnitOfWork:
        self._saved = copy.deepcopy(self._state())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:  # not committed: roll back
            b, ledger = self.billing, self.ledger
            (
                b.price_lists, b.choices, b.top_ups, ledger.accounts, ledger.transfers,
                ledger.last_timestamp, self.log.leaves,
            ) = self._saved  # fmt: skip
        self._saved = None

    def commit(self) -> None:
        self.commits += 1
        self._saved = None


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


def now_s(uow: FakeUnitOfWork) -> int:
    return uow.clock.now_ns() // 1_000_000_000


def set_prices(
    uow: Any, provider: int = UTILITY, effective_from: int | None = None, **prices: int
) -> PriceListRow:
    document: dict[str, Any] = {"prices": {**PRICES, **prices}}
    if effective_from is not None:
        document["effective_from"] = effective_from
    return handlers.set_price_list(
        SetPriceList(provider, document, "admin:ops"), uow, tariff=TARIFF
    )


def written(uow: FakeUnitOfWork) -> tuple[Any, ...]:
    return copy.deepcopy(uow._state())


def balance(uow: FakeUnitOfWork, account_id: int) -> int:
    a = uow.ledger.accounts[account_id]
    return a.credits_posted - a.debits_posted


# -- price lists -----------------------------------------------------------------------------


def test_price_lists_are_versions_each_logged_in_its_own_commit(uow: FakeUnitOfWork) -> None:
    first = set_prices(uow)
    uow.clock.advance(60)
    second = set_prices(uow, normal=700)

    assert first == PriceListRow(
        1, UTILITY, now_s(uow) - 60, handlers.prices_json(PRICES), "admin:ops",
        uow.clock.now_ns() - 60 * 10**9,
    )  # fmt: skip
    assert (second.id, second.effective_from) == (2, now_s(uow))
    assert uow.billing.price_lists_of([UTILITY]) == [first, second]
    assert uow.log.leaves == [records.PRICE_LIST.of(first), records.PRICE_LIST.of(second)]
    assert (uow.commits, uow.ledger.locks) == (2, 2)


def test_a_price_list_may_take_effect_later_and_versions_sort_by_when(
    uow: FakeUnitOfWork,
) -> None:
    later = set_prices(uow, effective_from=now_s(uow) + 2 * DAY, normal=800)
    sooner = set_prices(uow, effective_from=now_s(uow) + DAY, normal=750)
    community = set_prices(uow, SOLAR, normal=200)

    assert later.effective_from == now_s(uow) + 2 * DAY
    assert uow.billing.price_lists_of([UTILITY]) == [sooner, later]
    assert uow.billing.price_lists_of([UTILITY, SOLAR]) == [sooner, later, community]
    assert uow.billing.price_lists_of([]) == []


@pytest.mark.parametrize(
    ("effective_from", "code"),
    [
        (-1, "retroactive_price"),  # a second before now
        (366 * DAY * 2, "invalid_effective_from"),  # beyond the lead allowed
    ],
)
def test_a_price_list_never_applies_retroactively_nor_too_far_ahead(
    uow: FakeUnitOfWork, effective_from: int, code: str
) -> None:
    with pytest.raises(BillingError) as refused:
        set_prices(uow, effective_from=now_s(uow) + effective_from)
    assert refused.value.code == code
    assert written(uow) == written(FakeUnitOfWork())
    assert uow.commits == 0


@pytest.mark.parametrize(
    ("document", "code"),
    [
        ({"prices": {"normal": 650}}, "missing_window"),
        ({"prices": {**PRICES, "shoulder": 1}}, "unknown_window"),
        ({"prices": {**PRICES, "normal": 6.5}}, "invalid_price"),
        ({"prices": PRICES, "standing_charge": 100}, "fixed_charge"),
        ([], "invalid_price_list"),
    ],
)
def test_a_bad_price_list_is_refused_and_writes_nothing(
    uow: FakeUnitOfWork, document: object, code: str
) -> None:
    with pytest.raises(BillingError) as refused:
        handlers.set_price_list(SetPriceList(UTILITY, document, "admin"), uow, tariff=TARIFF)
    assert refused.value.code.startswith(code)
    assert written(uow) == written(FakeUnitOfWork())
    assert uow.commits == 0


@pytest.mark.parametrize(
    ("seller", "code"),
    [(OPERATOR, "not_a_provider"), (MISSING, "not_found"), (ASHA, "not_found")],
)
def test_only_a_provider_or_community_sets_a_price_list(
    uow: FakeUnitOfWork, seller: int, code: str
) -> None:
    with pytest.raises(BillingError) as refused:
        set_prices(uow, seller)
    assert refused.value.code == code
    assert (uow.billing.price_lists, uow.log.leaves, uow.commits) == ([], [], 0)


# -- provider choices ------------------------------------------------------------------------


def test_a_choice_takes_effect_at_once_of_a_provider_with_a_price_in_force(
    uow: FakeUnitOfWork,
) -> None:
    set_prices(uow)
    set_prices(uow, SOLAR)
    leaves = list(uow.log.leaves)
    uow.clock.advance(5)
    first = handlers.choose_provider(ChooseProvider(ASHA, UTILITY), uow)
    second = handlers.choose_provider(ChooseProvider(ASHA, SOLAR), uow)

    assert first == ChoiceRow(1, ASHA, UTILITY, now_s(uow), uow.clock.now_ns())
    assert (second.id, second.provider_id) == (2, SOLAR)
    assert uow.billing.choices_of([ASHA, BALA]) == [first, second]
    assert uow.billing.customers_among(UTILITY, [ASHA, BALA]) == {ASHA}
    assert uow.log.leaves == [
        *leaves,
        records.PROVIDER_CHOICE.of(first),
        records.PROVIDER_CHOICE.of(second),
    ]


@pytest.mark.parametrize(
    ("resident", "provider", "code"),
    [
        (ASHA, OPERATOR, "not_a_provider"),  # an organisation that sells nothing
        (ASHA, MISSING, "not_found"),
        (ASHA, BALA, "not_found"),  # a resident is no provider
        (NOBODY, UTILITY, "not_found"),  # no such resident
        (UTILITY, SOLAR, "not_found"),  # an organisation chooses no provider
    ],
)
def test_choosing_what_is_not_a_provider_is_refused_and_writes_nothing(
    uow: FakeUnitOfWork, resident: int, provider: int, code: str
) -> None:
    set_prices(uow)
    set_prices(uow, SOLAR)
    before = written(uow)
    with pytest.raises(BillingError) as refused:
        handlers.choose_provider(ChooseProvider(resident, provider), uow)
    assert refused.value.code == code
    assert written(uow) == before


def test_a_provider_whose_price_list_is_not_in_force_yet_cannot_be_chosen(
    uow: FakeUnitOfWork,
) -> None:
    set_prices(uow, effective_from=now_s(uow) + DAY)
    before = written(uow)
    with pytest.raises(BillingError) as refused:
        handlers.choose_provider(ChooseProvider(ASHA, UTILITY), uow)
    assert refused.value.code == "no_price_list"
    assert written(uow) == before
    with pytest.raises(BillingError):  # no price list at all
        handlers.choose_provider(ChooseProvider(ASHA, SOLAR), uow)

    uow.clock.advance(DAY)  # now it is in force
    assert handlers.choose_provider(ChooseProvider(ASHA, UTILITY), uow).provider_id == UTILITY


# -- top-ups ---------------------------------------------------------------------------------


def top_up(uow: Any, reference: str, amount: int = 50_000, resident: int = ASHA) -> Any:
    return top_ups.top_up_wallet(TopUpWallet(resident, amount, reference, "admin:ops"), uow)


def test_a_top_up_opens_the_settlement_account_and_credits_the_wallet(
    uow: FakeUnitOfWork,
) -> None:
    outcome = top_up(uow, "utr-1")

    wallet = wallet_account_id(ASHA, Ledger.INR)
    transfer_id = top_ups.top_up_transfer_id(1)
    assert outcome.created
    assert outcome.top_up == TopUpRow(
        1, "UTR-1", ASHA, 50_000, transfer_id, "admin:ops", uow.clock.now_ns()
    )
    assert uow.billing.top_ups == [outcome.top_up]
    assert (balance(uow, wallet), balance(uow, INR_SETTLEMENT)) == (50_000, -50_000)
    posted = uow.ledger.transfers[transfer_id]
    assert (posted.debit_account_id, posted.credit_account_id) == (INR_SETTLEMENT, wallet)
    assert (posted.code, posted.user_data) == (BillingCode.TOP_UP, 1)
    # The settlement account, the transfer and the top-up in one commit; the top-up's leaf last.
    assert uow.log.leaves[-1] == records.TOP_UP.of(outcome.top_up)
    assert len(uow.log.leaves) == 3
    assert uow.commits == 1

    second = top_up(uow, "UTR-2", 10_000, BALA)
    assert (second.top_up.id, len(uow.log.leaves), uow.commits) == (2, 5, 2)  # 904 is open


def test_a_reference_used_twice_answers_the_first_top_up_or_is_refused(
    uow: FakeUnitOfWork,
) -> None:
    first = top_up(uow, "UTR-7")
    before = written(uow)

    again = top_up(uow, "utr-7")  # references are case-insensitive: the same payment
    assert (again.top_up, again.created) == (first.top_up, False)
    assert written(uow) == before  # a retry posts nothing
    for amount, resident in [(50_001, ASHA), (50_000, BALA)]:
        with pytest.raises(BillingError) as refused:
            top_up(uow, "UTR-7", amount, resident)
        assert refused.value.code == "reference_reused"
        assert written(uow) == before
    assert balance(uow, wallet_account_id(ASHA, Ledger.INR)) == 50_000


@pytest.mark.parametrize(
    ("reference", "amount", "resident", "code"),
    [
        ("", 100, ASHA, "invalid_reference"),
        ("-starts-with-a-dash", 100, ASHA, "invalid_reference"),
        ("x" * 65, 100, ASHA, "invalid_reference"),
        ("UTR-1", 0, ASHA, "invalid_amount"),
        ("UTR-1", -5, ASHA, "invalid_amount"),
        ("UTR-1", True, ASHA, "invalid_amount"),
        ("UTR-1", 2**63, ASHA, "invalid_amount"),
        ("UTR-1", 100, NOBODY, "not_found"),
        ("UTR-1", 100, UTILITY, "not_found"),  # an organisation has no resident's wallet
    ],
)
def test_a_bad_top_up_is_refused_and_writes_nothing(
    uow: FakeUnitOfWork, reference: str, amount: int, resident: int, code: str
) -> None:
    before = written(uow)
    with pytest.raises(BillingError) as refused:
        top_up(uow, reference, amount, resident)
    assert refused.value.code == code
    assert written(uow) == before
    assert uow.commits == 0


def test_a_settlement_account_opened_otherwise_refuses_every_top_up(
    uow: FakeUnitOfWork, caplog: pytest.LogCaptureFixture
) -> None:
    uow.ledger.accounts[INR_SETTLEMENT] = AccountState(INR_SETTLEMENT, Ledger.INR, 1, 0)
    before = written(uow)
    with pytest.raises(BillingError) as refused:
        top_up(uow, "UTR-1")
    assert refused.value.code == "settlement_account_unusable"
    assert written(uow) == before
    assert "ALARM" in caplog.text


def test_a_top_up_transfer_id_taken_by_another_transfer_is_skipped(
    uow: FakeUnitOfWork, caplog: pytest.LogCaptureFixture
) -> None:
    planted = top_ups.top_up_transfer_id(1)
    uow.ledger.transfers[planted] = TransferRecord(
        planted, 0, 0, 1, Ledger.INR, 1, 0, 0, 0, 0, 1, 0, 0
    )  # planted in the store: no top-up made it
    outcome = top_up(uow, "UTR-1")
    assert (outcome.top_up.id, outcome.top_up.transfer_id) == (2, planted + 1)
    assert "ALARM" in caplog.text
