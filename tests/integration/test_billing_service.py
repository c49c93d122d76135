"""Pay-as-you-go billing through the service layer, on SQLite and PostgreSQL: providers set
per-kWh price lists, a resident chooses one mid-month, imported energy is billed per interval
at the right provider's price in the interval's time-of-day window and paid from the INR
wallet, arrears wait for a top-up, and the monthly statement adds up."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from cityshare.audit import verify as audit
from cityshare.billing import commands as billing_commands
from cityshare.billing import handlers as billing
from cityshare.billing import queries as billing_queries
from cityshare.billing.model import BillingError, month_of, payment_transfer_id
from cityshare.billing.tables import energy_bills
from cityshare.billing.top_ups import top_up_transfer_id
from cityshare.bootstrap import Platform, unit_of_work
from cityshare.energy.tables import meter_intervals
from cityshare.identity import commands as identity_commands
from cityshare.identity.residents import wallet_account_id
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import commands as ledger_commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import CreateTransferResult, Ledger, NewAccount, Transfer
from energy_helpers import Meter, ingest, resident_with_meter

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
#: The platform operator's settlement account that top-ups come from (no balance limit).
SETTLEMENT = 50
UTILITY = {"normal": 600, "solar": 400, "peak": 900}
SUNLEASE = {"normal": 500, "solar": 300, "peak": 800}


def local(hour: int, minute: int = 0, day: int = 15) -> int:
    """Unix seconds of a local time in November 2023 (the test clock starts on the 15th,
    03:43 in India)."""
    return int(dt.datetime(2023, 11, day, hour, minute, tzinfo=IST).timestamp())


def move_to(clock: ManualClock, ts: int) -> None:
    now = clock.now_ns() // 10**9
    assert ts >= now, "the test clock only moves forward"
    clock.advance(ts - now)


def organisation(platform: Platform, name: str, kind: str = "provider") -> int:
    org: int = platform.bus.handle(identity_commands.CreateOrganisation(kind, name)).id
    return org


def set_prices(platform: Platform, org: int, prices: dict[str, Any], **more: Any) -> int:
    row = platform.bus.handle(
        billing_commands.SetPriceList(org, {"prices": prices, **more}, "staff")
    )
    version: int = row.id
    return version


def top_up(platform: Platform, resident: int, paise: int) -> None:
    """What a platform operator does over POST /api/v1/transfers."""
    platform.bus.handle(
        ledger_commands.CreateAccounts(
            [NewAccount(SETTLEMENT, Ledger.INR, 1, 0, "platform:settlement")], atomic=False
        )
    )
    with platform.uow() as uow:
        next_id = 1 + len(uow.ledger.statement_rows(SETTLEMENT, after=0, limit=10_000))
    outcome = platform.bus.handle(
        ledger_commands.CreateTransfers(
            [
                Transfer(
                    10_000 + next_id,
                    SETTLEMENT,
                    wallet_account_id(resident, Ledger.INR),
                    paise,
                    Ledger.INR,
                    1,
                )
            ]
        )
    )
    assert outcome.results == [CreateTransferResult.CREATED]


def inr(platform: Platform, party: int) -> int:
    account = ledger_service.get_account(platform.uow(), wallet_account_id(party, Ledger.INR))
    assert account is not None
    return account.balance


def bill(platform: Platform, **kw: Any) -> billing.BillingOutcome:
    outcome: billing.BillingOutcome = platform.bus.handle(billing_commands.BillEnergy(**kw))
    return outcome


def bills_of(platform: Platform, resident: int) -> list[dict[str, Any]]:
    with platform.uow() as uow:
        rows = uow.billing.conn.execute(
            energy_bills.select()
            .where(energy_bills.c.resident_id == resident)
            .order_by(energy_bills.c.id)
        ).all()
    return [dict(r._mapping) for r in rows]


def readings(meter: Meter, points: list[tuple[int, int, int]]) -> list[str]:
    """Signed readings at (ts, import register, export register), seq 0, 1, …"""
    return [meter.reading(seq, ts, imp, exp) for seq, (ts, imp, exp) in enumerate(points)]


@pytest.fixture
def world(platform: Platform, clock: ManualClock) -> dict[str, Any]:
    utility = organisation(platform, "City Utility")
    sunlease = organisation(platform, "SunLease EaaS")
    set_prices(platform, utility, UTILITY)
    set_prices(platform, sunlease, SUNLEASE)
    meter = resident_with_meter(platform, "asha")
    return {"utility": utility, "sunlease": sunlease, "meter": meter}


def asha_day(platform: Platform, clock: ManualClock, world: dict[str, Any]) -> None:
    """Asha imports in normal, solar and peak hours, and switches to SunLease at 10:30."""
    meter: Meter = world["meter"]
    move_to(clock, local(10, 30))
    platform.bus.handle(billing_commands.ChooseProvider(meter.resident_id, world["sunlease"]))
    move_to(clock, local(20, 5))
    points = [
        (local(4), 10_000, 0),
        (local(5), 11_234, 0),  # 04:00 normal, utility: 1234 Wh
        (local(10), 13_234, 0),  # 05:00 normal, utility: 2000 Wh
        (local(11), 14_011, 2_000),  # 10:00 solar, utility (chosen SunLease only at 10:30)
        (local(19), 19_011, 9_000),  # 11:00 solar, SunLease: 5000 Wh
        (local(20), 20_511, 9_000),  # 19:00 peak, SunLease: 1500 Wh
    ]
    outcome = ingest(platform, readings(meter, points))
    assert outcome.intervals == 6


def test_imports_are_billed_at_the_chosen_providers_price_in_their_window(
    platform: Platform, clock: ManualClock, world: dict[str, Any]
) -> None:
    asha = world["meter"].resident_id
    utility, sunlease = world["utility"], world["sunlease"]
    asha_day(platform, clock, world)
    top_up(platform, asha, 10_000)

    outcome = bill(platform)
    assert (outcome.bills, outcome.paid_bills, outcome.unpaid_bills) == (5, 5, 0)
    got = [
        (b["provider_id"], b["tod"], b["import_wh"], b["paise_per_kwh"], b["amount"], b["carry"])
        for b in bills_of(platform, asha)
    ]
    assert got == [
        (utility, "normal", 1234, 600, 740, 400),  # 740.4 paise: 0.4 carried
        (utility, "normal", 2000, 600, 1200, 400),  # 1200 + 0.4 carried: 1200.4
        (utility, "solar", 777, 400, 311, 200),  # 310.8 + 0.4 = 311.2
        (sunlease, "solar", 5000, 300, 1500, 0),
        (sunlease, "peak", 1500, 800, 1200, 0),
    ]
    # Exactly floor(sum of Wh * price / 1000) per provider: nothing lost or invented.
    assert inr(platform, utility) == (1234 * 600 + 2000 * 600 + 777 * 400) // 1000 == 2251
    assert inr(platform, sunlease) == 2700
    assert inr(platform, asha) == 10_000 - 4951

    # A rerun (or a crash and retry) bills and pays nothing twice.
    clock.advance(3600)
    again = bill(platform)
    assert (again.bills, again.paid_bills, again.examined) == (0, 0, 0)
    assert inr(platform, asha) == 10_000 - 4951
    assert len(bills_of(platform, asha)) == 5
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, report.problems


def test_a_wallet_short_of_funds_leaves_arrears_paid_after_a_top_up(
    platform: Platform, clock: ManualClock, world: dict[str, Any]
) -> None:
    asha = world["meter"].resident_id
    bala_meter = resident_with_meter(platform, "bala")
    bala = bala_meter.resident_id
    asha_day(platform, clock, world)
    top_up(platform, asha, 10_000)
    # Bala (utility by default) imports 1000 Wh at night, then 100 Wh, and has no money.
    ingest(
        platform,
        readings(bala_meter, [(local(4), 0, 0), (local(5), 1000, 0), (local(6), 1100, 0)]),
    )

    first = bill(platform)
    # Asha's bills post although Bala's cannot: one short wallet does not fail the batch.
    assert first.paid_bills == 5
    assert first.unpaid_bills == 2
    assert first.short == {bala}
    assert inr(platform, bala) == 0
    with platform.uow() as uow:
        assert uow.billing.arrears_now(bala) == (660, 2)

    # 150 paise would cover the 60-paise bill but not the older 600: oldest first, so neither.
    top_up(platform, bala, 150)
    assert bill(platform).paid_bills == 0
    assert inr(platform, bala) == 150

    top_up(platform, bala, 600)
    paid = bill(platform)
    assert (paid.paid_bills, paid.paid, paid.bills) == (2, 660, 0)
    assert inr(platform, bala) == 90
    with platform.uow() as uow:
        assert uow.billing.arrears_now(bala) == (0, 0)
    assert inr(platform, world["utility"]) == 2251 + 660
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, report.problems


def test_the_monthly_statement_adds_up(
    platform: Platform, clock: ManualClock, world: dict[str, Any]
) -> None:
    asha = world["meter"].resident_id
    utility, sunlease = world["utility"], world["sunlease"]
    asha_day(platform, clock, world)
    top_up(platform, asha, 3_000)  # not enough for everything: 4951 billed
    bill(platform)

    month = month_of("2023-11", platform.tariff.zone)
    s = billing_queries.monthly_statement(platform.uow(), asha, month, tariff=platform.tariff)
    assert [(i.provider_id, i.window, i.import_wh, i.amount) for i in s.imports] == [
        (utility, "normal", 3234, 1940),
        (utility, "solar", 777, 311),
        (sunlease, "peak", 1500, 1200),
        (sunlease, "solar", 5000, 1500),
    ]
    assert [i.provider for i in s.imports] == ["City Utility"] * 2 + ["SunLease EaaS"] * 2
    assert s.billed == sum(i.amount for i in s.imports) == 4951
    assert s.import_wh == 10_511
    assert s.unbilled_import_wh == 0
    # Exports happened in solar hours only: 9 kWh, 0.861 g/Wh, 0.8 points/kWh.
    assert [(e.window, e.export_wh) for e in s.exports] == [("solar", 9000)]
    assert (s.export_wh, s.carbon_g, s.credit_milli) == (9000, 7749, 7200)
    # Oldest first: 740 + 1200 + 311 = 2251 fits in 3000, the next (1500) does not.
    assert (s.opening, s.received, s.paid, s.other_debits) == (0, 3000, 2251, 0)
    assert s.closing == s.opening + s.received - s.paid - s.other_debits == 749
    assert s.paid + s.arrears_at_close == s.billed
    assert (s.arrears_now, s.arrears_bills_now) == (2700, 2)
    assert [(p.provider_id, p.amount, p.count) for p in s.payments] == [(utility, 2251, 3)]

    # December: the arrears are paid after a top-up; November's closing is its opening.
    move_to(clock, local(9, day=1) + 30 * 86400)
    top_up(platform, asha, 5_000)
    bill(platform)
    dec = billing_queries.monthly_statement(
        platform.uow(), asha, month_of("2023-12", platform.tariff.zone), tariff=platform.tariff
    )
    assert dec.imports == []
    assert dec.billed == 0
    assert (dec.opening, dec.received, dec.paid, dec.closing) == (749, 5000, 2700, 3049)
    assert dec.opening + dec.received - dec.paid - dec.other_debits == dec.closing
    assert dec.arrears_at_close == dec.arrears_now == 0
    nov = billing_queries.monthly_statement(platform.uow(), asha, month, tariff=platform.tariff)
    assert nov.arrears_at_close == 2700  # still owed when November closed


def test_imports_with_no_price_in_force_are_recorded_and_not_charged(
    platform: Platform, clock: ManualClock
) -> None:
    meter = resident_with_meter(platform, "asha")
    move_to(clock, local(6))
    ingest(platform, readings(meter, [(local(4), 0, 0), (local(5), 800, 0)]))
    top_up(platform, meter.resident_id, 1000)
    outcome = bill(platform)
    assert (outcome.bills, outcome.unpriced, outcome.billed) == (1, 1, 0)
    assert [(b["provider_id"], b["amount"]) for b in bills_of(platform, meter.resident_id)] == [
        (0, 0)
    ]
    # A price list set later never reaches back.
    utility = organisation(platform, "City Utility")
    set_prices(platform, utility, UTILITY)
    assert bill(platform).bills == 0
    assert inr(platform, meter.resident_id) == 1000


def test_billing_in_small_batches_bills_the_same(
    platform: Platform, clock: ManualClock, world: dict[str, Any]
) -> None:
    asha = world["meter"].resident_id
    asha_day(platform, clock, world)
    top_up(platform, asha, 10_000)
    outcome = bill(platform, batch=2)
    assert outcome.batches == 3
    assert outcome.examined == 6
    assert outcome.paid == 4951
    assert inr(platform, asha) == 10_000 - 4951


def test_billing_stops_at_the_instant_it_is_given(
    platform: Platform, clock: ManualClock, world: dict[str, Any]
) -> None:
    meter: Meter = world["meter"]
    move_to(clock, local(6))
    ingest(platform, readings(meter, [(local(4), 0, 0), (local(5), 1000, 0)]))
    recorded = clock.now_ns()
    clock.advance(60)
    ingest(platform, [meter.reading(2, local(6), 3000, 0)])
    assert bill(platform, up_to_ns=recorded).bills == 1
    assert bill(platform, up_to_ns=recorded).bills == 0
    assert bill(platform).bills == 1


BAD_PRICE_LISTS = {
    "negative": ({"prices": {**UTILITY, "peak": -5}}, "invalid_price"),
    "float": ({"prices": {**UTILITY, "solar": 4.5}}, "invalid_price"),
    "numeric_string": ({"prices": {**UTILITY, "solar": "400"}}, "invalid_price"),
    "fixed_charge_field": ({"prices": UTILITY, "fixed_charge": 5000}, "fixed_charge"),
    "subscription_field": ({"prices": UTILITY, "monthly_subscription": 99}, "fixed_charge"),
    "standing_charge_window": ({"prices": {**UTILITY, "standing": 100}}, "fixed_charge"),
    "unknown_window": ({"prices": {**UTILITY, "night": 300}}, "unknown_window"),
    "missing_window": ({"prices": {"normal": 600, "solar": 400}}, "missing_window"),
    "no_prices": ({"effective_from": 1}, "invalid_price_list"),
    "past": ({"prices": UTILITY, "effective_from": 1_600_000_000}, "retroactive_price"),
    "not_an_object": ([600, 400, 900], "invalid_price_list"),
}


@pytest.mark.parametrize("case", sorted(BAD_PRICE_LISTS))
def test_a_bad_price_list_is_refused_with_a_reason_and_writes_nothing(
    platform: Platform, case: str
) -> None:
    utility = organisation(platform, "City Utility")
    document, code = BAD_PRICE_LISTS[case]
    with platform.uow() as uow:
        before = uow.log.size()
    with pytest.raises(BillingError) as refused:
        platform.bus.handle(billing_commands.SetPriceList(utility, document, "staff"))
    assert refused.value.code == code
    assert str(refused.value)
    with platform.uow() as uow:
        assert uow.log.size() == before
    assert billing_queries.provider_prices(platform.uow(), utility).current is None


def test_price_lists_are_versions_and_future_ones_wait(
    platform: Platform, clock: ManualClock
) -> None:
    utility = organisation(platform, "City Utility")
    first = set_prices(platform, utility, UTILITY)
    start = clock.now_ns() // 10**9
    later = set_prices(platform, utility, {**UTILITY, "peak": 950}, effective_from=start + 3600)
    prices = billing_queries.provider_prices(platform.uow(), utility)
    assert prices.current is not None
    assert prices.current.id == first
    assert [v.id for v in prices.upcoming] == [later]
    clock.advance(3600)
    prices = billing_queries.provider_prices(platform.uow(), utility)
    assert prices.current is not None
    assert prices.current.prices["peak"] == 950


def test_a_resident_chooses_only_a_provider_with_prices(
    platform: Platform, world: dict[str, Any]
) -> None:
    asha = world["meter"].resident_id
    chargers = platform.bus.handle(
        identity_commands.CreateOrganisation("operator", "Highway Chargers", "energy")
    ).id
    unpriced = organisation(platform, "New Power")
    for provider, code in ((chargers, "not_a_provider"), (unpriced, "no_price_list"),
                           (12345, "not_found")):  # fmt: skip
        with pytest.raises(BillingError) as refused:
            platform.bus.handle(billing_commands.ChooseProvider(asha, provider))
        assert refused.value.code == code
    choice = billing_queries.current_provider(platform.uow(), asha, default_setting=None)
    assert choice.basis == "default"
    assert choice.provider is not None
    assert choice.provider.provider.id == world["utility"]  # the first provider registered
    platform.bus.handle(billing_commands.ChooseProvider(asha, world["sunlease"]))
    choice = billing_queries.current_provider(platform.uow(), asha, default_setting=None)
    assert choice.basis == "chosen"
    assert choice.provider is not None
    assert choice.provider.provider.id == world["sunlease"]
    # A community asset sells its energy too; the default can be set explicitly.
    solar = organisation(platform, "Ward 9 Rooftops", kind="community")
    set_prices(platform, solar, {"normal": 450, "solar": 250, "peak": 700})
    other = resident_with_meter(platform, "bala").resident_id
    choice = billing_queries.current_provider(platform.uow(), other, default_setting=solar)
    assert choice.provider is not None
    assert choice.provider.provider.name == "Ward 9 Rooftops"


def test_a_planted_collision_with_a_payment_id_leaves_that_bill_in_arrears_and_pays_the_rest(
    platform: Platform, clock: ManualClock, world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A bill's payment id is minted from the bill (no client can name it); a transfer planted
    there in the store makes the ledger refuse that one payment: an alarm, not a failed run."""
    asha = world["meter"].resident_id
    bala_meter = resident_with_meter(platform, "bala")
    bala = bala_meter.resident_id
    top_up(platform, asha, 10_000)
    top_up(platform, bala, 10_000)
    move_to(clock, local(7))
    ingest(platform, readings(world["meter"], [(local(4), 0, 0), (local(5), 1000, 0)]))
    ingest(platform, readings(bala_meter, [(local(4), 0, 0), (local(5), 1000, 0)]))
    with platform.engine.connect() as conn:
        asha_interval = conn.execute(
            select(func.max(meter_intervals.c.id)).where(
                meter_intervals.c.owner_id == asha, meter_intervals.c.status == "ok"
            )
        ).scalar_one()
    planted = payment_transfer_id(asha_interval)  # the bill id is the interval's
    uow = unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer)
    with uow:
        last = uow.ledger.lock_ledger()
        foreign = Transfer(planted, SETTLEMENT, wallet_account_id(asha, Ledger.INR), 1, Ledger.INR)
        assert not ledger_service.post_transfers(
            uow, [foreign], last_timestamp=last, atomic=True
        ).failed
        uow.commit()

    with caplog.at_level(logging.ERROR, logger="cityshare.billing.handlers"):
        outcome = bill(platform)

    assert (outcome.bills, outcome.paid_bills, outcome.unpaid_bills) == (2, 1, 1)
    assert inr(platform, bala) == 10_000 - 600
    assert inr(platform, asha) == 10_000 + 1  # the planted transfer; her bill waits
    with platform.uow() as uow:
        assert uow.billing.arrears_now(asha) == (600, 1)
    [alarm] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(planted) in alarm.getMessage()
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert [p.key for p in report.problems] == [asha_interval]
    # The next run goes on (the bill stays in arrears, alarmed again), nothing raised.
    assert bill(platform).paid_bills == 0


def test_a_taken_top_up_transfer_id_is_an_alarm_and_later_top_ups_go_on(
    platform: Platform, world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A top-up's transfer id is minted from its id; a transfer already there (a client's from
    before ids from 2^61 were reserved, or planted in the store) is skipped with an alarm, so
    top-ups never jam: every one after it, for every resident, is credited once."""
    asha = world["meter"].resident_id
    bala = resident_with_meter(platform, "bala").resident_id
    top_up(platform, asha, 1)  # opens the client's settlement account 50
    planted = [top_up_transfer_id(1), top_up_transfer_id(2)]
    with unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer) as uow:
        last = uow.ledger.lock_ledger()
        foreign = [
            Transfer(tid, SETTLEMENT, wallet_account_id(asha, Ledger.INR), 1, Ledger.INR)
            for tid in planted
        ]
        assert not ledger_service.post_transfers(
            uow, foreign, last_timestamp=last, atomic=True
        ).failed
        uow.commit()

    with caplog.at_level(logging.ERROR, logger="cityshare.billing.top_ups"):
        first = platform.bus.handle(billing_commands.TopUpWallet(asha, 500, "UTR-A", "op"))
        second = platform.bus.handle(billing_commands.TopUpWallet(bala, 700, "UTR-B", "op"))

    assert (first.created, second.created) == (True, True)
    assert (first.top_up.id, second.top_up.id) == (3, 4)
    assert first.top_up.transfer_id == top_up_transfer_id(3)
    assert inr(platform, asha) == 1 + 2 + 500
    assert inr(platform, bala) == 700
    [alarm] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert all(str(tid) in alarm.getMessage() for tid in planted)
