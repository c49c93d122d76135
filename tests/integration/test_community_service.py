"""A community solar array owned by residents, on SQLite and PostgreSQL: its meter earns into
the asset's wallets, each settlement period pays everything out pro rata to exact integers
(not one milli-point lost), a rerun pays nothing twice, share transfers move the next split,
and every refusal writes nothing."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest
from sqlalchemy import func, select, update

from cityshare.audit import verify as audit
from cityshare.bootstrap import Platform, unit_of_work
from cityshare.community import commands as community_commands
from cityshare.community import handlers as community
from cityshare.community import queries as community_queries
from cityshare.community import tables as community_tables
from cityshare.community.handlers import CommunityCode, Status, payout_transfer_id
from cityshare.community.model import CommunityError
from cityshare.identity import commands as identity_commands
from cityshare.identity.residents import wallet_account_id
from cityshare.kernel.clock import ManualClock
from cityshare.ledger import commands as ledger_commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger import tables as ledger_tables
from cityshare.ledger.model import Ledger, NewAccount, Transfer, TransferFlags
from energy_helpers import Meter, add_device, ingest
from identity_helpers import a_vid, assertion

IST = dt.timezone(dt.timedelta(hours=5, minutes=30))


def ist(day: dt.date, hh: int = 0, mm: int = 0) -> int:
    """Unix seconds of a local time in India (the tariff's timezone)."""
    return int(dt.datetime.combine(day, dt.time(hh, mm), IST).timestamp())


#: The ManualClock starts at 2023-11-15 03:43 in India; monthly periods end on the 1st.
NOV_15 = dt.date(2023, 11, 15)
DEC_1 = ist(dt.date(2023, 12, 1)) * 10**9
JAN_1 = ist(dt.date(2024, 1, 1)) * 10**9


class Resident:
    def __init__(self, platform: Platform, person: str) -> None:
        self.vid = a_vid()
        self.id: int = platform.bus.handle(
            identity_commands.EnrolResident(assertion(platform, person, vid=self.vid))
        ).resident_id


def move_to(clock: ManualClock, unix_s: int) -> None:
    clock.advance(unix_s - clock.now_ns() // 10**9)


def balance(platform: Platform, party: int, ledger: Ledger) -> int:
    account = ledger_service.get_account(platform.uow(), wallet_account_id(party, ledger))
    assert account is not None
    return account.balance


def log_size(platform: Platform) -> int:
    with platform.uow() as uow:
        return uow.log.size()


def count(platform: Platform, table: Any) -> int:
    with platform.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def audit_ok(platform: Platform) -> None:
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert report.ok, "\n".join(str(p) for p in report.problems)
    assert ledger_service.check_invariants(platform.uow()).ok


def holdings(platform: Platform, asset: int) -> dict[int, int]:
    with platform.uow() as uow:
        return uow.community.holdings(asset)


@pytest.fixture
def asset(platform: Platform) -> int:
    org: int = platform.bus.handle(
        identity_commands.CreateOrganisation("community", "Ward 9 Solar")
    ).id
    return org


@pytest.fixture
def meter(platform: Platform, asset: int) -> Meter:
    return add_device(platform, asset)


@pytest.fixture
def owners(platform: Platform, asset: int) -> list[Resident]:
    """Asha, Bala and Chitra holding 1, 2 and 4 shares."""
    people = [Resident(platform, name) for name in ("asha", "bala", "chitra")]
    platform.bus.handle(
        community_commands.IssueShares(
            asset,
            [
                community_commands.ShareGrant(p.vid, n)
                for p, n in zip(people, (1, 2, 4), strict=True)
            ],
            "admin",
        )
    )
    return people


def earn_in_november(platform: Platform, clock: ManualClock, meter: Meter) -> None:
    """1 kWh exported in solar hours on 15 November: 800 milli-points and 861 g CO2e."""
    move_to(clock, ist(NOV_15, 23))
    outcome = ingest(
        platform,
        [
            meter.reading(0, ist(NOV_15, 10), 0, 5000),
            meter.reading(1, ist(NOV_15, 10, 15), 0, 6000),
        ],
    )
    assert [r.result for r in outcome.results] == ["accepted", "accepted"]


def settle(platform: Platform, asset: int | None = None) -> list[community.DistributionOutcome]:
    outcomes: list[community.DistributionOutcome] = platform.bus.handle(
        community_commands.SettleCommunityAssets(asset)
    )
    return outcomes


# -- the asset's meter earns for the asset ---------------------------------------------------


def test_the_assets_meter_credits_the_organisations_own_wallets(
    platform: Platform, clock: ManualClock, asset: int, meter: Meter
) -> None:
    earn_in_november(platform, clock, meter)
    assert balance(platform, asset, Ledger.CREDIT) == 800
    assert balance(platform, asset, Ledger.CARBON) == 861
    assert balance(platform, asset, Ledger.ENERGY) == 1000


# -- distribution ----------------------------------------------------------------------------


def test_a_period_pays_everything_out_pro_rata_to_the_last_unit(
    platform: Platform, clock: ManualClock, asset: int, meter: Meter, owners: list[Resident]
) -> None:
    earn_in_november(platform, clock, meter)
    move_to(clock, DEC_1 // 10**9 + 3600)
    [outcome] = settle(platform)
    assert outcome.status == Status.DISTRIBUTED
    assert outcome.period_end == DEC_1
    # 800 * 1/7, 2/7, 4/7 = 114.29, 228.57, 457.14: floors 114 + 228 + 457 = 799, and the one
    # milli-point left goes to the largest remainder (.57, Bala). 861 g divide exactly.
    asha, bala, chitra = owners
    assert [(p.resident_id, p.shares, p.credit_milli, p.carbon_g) for p in outcome.payouts] == [
        (asha.id, 1, 114, 123),
        (bala.id, 2, 229, 246),
        (chitra.id, 4, 457, 492),
    ]
    assert [balance(platform, r.id, Ledger.CREDIT) for r in owners] == [114, 229, 457]
    assert [balance(platform, r.id, Ledger.CARBON) for r in owners] == [123, 246, 492]
    assert balance(platform, asset, Ledger.CREDIT) == 0
    assert balance(platform, asset, Ledger.CARBON) == 0
    assert balance(platform, asset, Ledger.ENERGY) == 1000  # the record of export stays
    assert outcome.distribution is not None
    assert (outcome.distribution.credit_milli, outcome.distribution.carbon_g) == (800, 861)
    assert outcome.transfers == 6
    # One linked chain: every transfer but the last is linked, ids derived from the payouts.
    with platform.engine.connect() as conn:
        posted = conn.execute(
            select(
                ledger_tables.transfers.c.id,
                ledger_tables.transfers.c.flags,
                ledger_tables.transfers.c.code,
            )
            .where(ledger_tables.transfers.c.user_data == outcome.distribution.id)
            .where(ledger_tables.transfers.c.code.in_([4101, 4102]))
            .order_by(ledger_tables.transfers.c.timestamp)
        ).all()
    assert [row.flags for row in posted] == [int(TransferFlags.LINKED)] * 5 + [0]
    assert {row.id for row in posted} == {
        payout_transfer_id(p.id, ledger)
        for p in outcome.payouts
        for ledger in (Ledger.CREDIT, Ledger.CARBON)
    }
    assert {row.code for row in posted} == {
        CommunityCode.CREDIT_PAYOUT,
        CommunityCode.CARBON_PAYOUT,
    }
    audit_ok(platform)


def test_a_rerun_pays_nothing_twice(
    platform: Platform, clock: ManualClock, asset: int, meter: Meter, owners: list[Resident]
) -> None:
    earn_in_november(platform, clock, meter)
    move_to(clock, DEC_1 // 10**9 + 3600)
    [first] = settle(platform)
    size = log_size(platform)
    assert settle(platform) == []  # nothing due any more
    again = platform.bus.handle(community_commands.DistributeCommunityEarnings(asset, DEC_1))
    assert again.status == Status.ALREADY_DISTRIBUTED
    assert again.distribution == first.distribution
    assert again.payouts == first.payouts
    assert log_size(platform) == size
    assert [balance(platform, r.id, Ledger.CREDIT) for r in owners] == [114, 229, 457]
    assert count(platform, community_tables.community_distributions) == 1


def test_a_share_transfer_before_the_next_period_end_changes_the_next_split(
    platform: Platform, clock: ManualClock, asset: int, meter: Meter, owners: list[Resident]
) -> None:
    asha, bala, chitra = owners
    earn_in_november(platform, clock, meter)
    move_to(clock, DEC_1 // 10**9 + 3600)
    settle(platform)
    # Chitra gives Asha 3 of her 4 shares: 1:2:4 becomes 4:2:1.
    platform.bus.handle(community_commands.TransferShares(asset, chitra.id, asha.vid, 3, "chitra"))
    assert holdings(platform, asset) == {asha.id: 4, bala.id: 2, chitra.id: 1}
    december = dt.date(2023, 12, 10)
    move_to(clock, ist(december, 23))
    ingest(
        platform,
        [
            meter.reading(2, ist(december, 10), 0, 6000),
            meter.reading(3, ist(december, 10, 15), 0, 8000),
        ],
    )
    earned = balance(platform, asset, Ledger.CREDIT)
    assert earned > 0
    move_to(clock, JAN_1 // 10**9 + 60)
    [outcome] = settle(platform)
    assert outcome.period_end == JAN_1
    paid = {p.resident_id: p.credit_milli for p in outcome.payouts}
    assert sum(paid.values()) == earned
    assert paid == community.split_pro_rata(earned, {asha.id: 4, bala.id: 2, chitra.id: 1})
    assert paid[asha.id] > paid[bala.id] > paid[chitra.id]
    assert balance(platform, asset, Ledger.CREDIT) == 0
    audit_ok(platform)


def test_earnings_credited_after_the_period_end_wait_for_the_next_period(
    platform: Platform, clock: ManualClock, asset: int, meter: Meter, owners: list[Resident]
) -> None:
    earn_in_november(platform, clock, meter)
    # A late reading (from 30 November) arrives on 1 December, after the period ended.
    move_to(clock, DEC_1 // 10**9 + 600)
    ingest(platform, [meter.reading(2, ist(dt.date(2023, 11, 30), 10), 0, 6700)])
    late = balance(platform, asset, Ledger.CREDIT) - 800
    assert late > 0
    [outcome] = settle(platform)
    assert outcome.distribution is not None
    assert outcome.distribution.credit_milli == 800
    assert balance(platform, asset, Ledger.CREDIT) == late


def test_periods_settled_late_in_one_run_each_pay_only_their_own_earnings(
    platform: Platform, clock: ManualClock, asset: int, meter: Meter, owners: list[Resident]
) -> None:
    earn_in_november(platform, clock, meter)  # nothing in December
    jan_10 = dt.date(2024, 1, 10)
    move_to(clock, ist(jan_10, 23))
    ingest(platform, [meter.reading(2, ist(jan_10, 10), 0, 6000),
                      meter.reading(3, ist(jan_10, 10, 15), 0, 8000)])  # fmt: skip
    january = balance(platform, asset, Ledger.CREDIT) - 800
    assert january > 0
    # Settling was off: one run settles both ended periods.
    outcomes = {o.period_end: o for o in settle(platform)}
    december = outcomes[DEC_1].distribution
    assert december is not None
    assert (december.credit_milli, december.carbon_g) == (800, 861)
    # December earned nothing: January's earnings wait for the period they were earned in.
    assert outcomes[JAN_1].status == Status.NOTHING_TO_DISTRIBUTE
    assert balance(platform, asset, Ledger.CREDIT) == january
    audit_ok(platform)


def test_an_empty_wallet_or_no_holders_distributes_nothing(
    platform: Platform, clock: ManualClock, asset: int
) -> None:
    move_to(clock, DEC_1 // 10**9 + 60)
    # Nobody holds shares and nothing was earned.
    assert [o.status for o in settle(platform)] == [Status.NO_HOLDERS]
    # Earnings but no holders: they stay in the wallet.
    lonely = platform.bus.handle(
        identity_commands.CreateOrganisation("community", "Lonely Battery")
    ).id
    battery = add_device(platform, lonely)
    december = dt.date(2023, 12, 5)
    move_to(clock, ist(december, 23))
    ingest(
        platform,
        [
            battery.reading(0, ist(december, 10), 0, 0),
            battery.reading(1, ist(december, 10, 15), 0, 1000),
        ],
    )
    move_to(clock, JAN_1 // 10**9 + 60)
    assert {o.asset_id: o.status for o in settle(platform, lonely)} == {lonely: Status.NO_HOLDERS}
    assert balance(platform, lonely, Ledger.CREDIT) == 800
    # Holders but an empty wallet: every period since the asset began is looked at again (none
    # was settled), and none pays anything.
    person = Resident(platform, "dev")
    platform.bus.handle(
        community_commands.IssueShares(
            asset, [community_commands.ShareGrant(person.vid, 5)], "admin"
        )
    )
    clock.advance(40 * 86400)  # past 1 February
    size = log_size(platform)
    assert [o.status for o in settle(platform, asset)] == [
        Status.NO_HOLDERS,  # 1 December
        Status.NO_HOLDERS,  # 1 January: the shares were issued after it
        Status.NOTHING_TO_DISTRIBUTE,  # 1 February
    ]
    assert log_size(platform) == size
    assert count(platform, community_tables.community_distributions) == 0


def test_a_period_that_has_not_ended_or_is_not_a_boundary_is_refused(
    platform: Platform, asset: int, owners: list[Resident]
) -> None:
    with pytest.raises(CommunityError) as exc:
        platform.bus.handle(community_commands.DistributeCommunityEarnings(asset, DEC_1))
    assert exc.value.code == "period_not_ended"
    with pytest.raises(CommunityError) as exc:
        platform.bus.handle(community_commands.DistributeCommunityEarnings(asset, DEC_1 + 10**9))
    assert exc.value.code == "invalid_period_end"


# -- shares ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("more_than_held", "insufficient_shares"),
        ("unknown_vid", "unknown_vid"),
        ("malformed_vid", "invalid_vid"),
        ("to_self", "same_holder"),
        ("zero", "invalid_shares"),
        ("not_an_asset", "not_found"),
        ("a_provider", "not_community"),
    ],
)
def test_a_refused_share_transfer_writes_nothing(
    platform: Platform, asset: int, owners: list[Resident], case: str, code: str
) -> None:
    asha, bala, _ = owners
    provider = platform.bus.handle(identity_commands.CreateOrganisation("provider", "Grid Co")).id
    target, to_vid, shares = asset, bala.vid, 1
    if case == "more_than_held":
        shares = 2
    elif case == "unknown_vid":
        to_vid = a_vid()
    elif case == "malformed_vid":
        to_vid = "1234"
    elif case == "to_self":
        to_vid = asha.vid
    elif case == "zero":
        shares = 0
    elif case == "not_an_asset":
        target = asset + 1000
    else:
        target = provider
    size = log_size(platform)
    before = holdings(platform, asset)
    with pytest.raises(CommunityError) as exc:
        platform.bus.handle(
            community_commands.TransferShares(target, asha.id, to_vid, shares, "asha")
        )
    assert exc.value.code == code
    assert log_size(platform) == size
    assert holdings(platform, asset) == before
    assert count(platform, community_tables.share_events) == 3


def test_issuing_is_all_or_nothing(platform: Platform, asset: int, owners: list[Resident]) -> None:
    asha = owners[0]
    size = log_size(platform)
    with pytest.raises(CommunityError) as exc:
        platform.bus.handle(
            community_commands.IssueShares(
                asset,
                [
                    community_commands.ShareGrant(asha.vid, 5),
                    community_commands.ShareGrant(a_vid(), 5),
                ],
                "admin",
            )
        )
    assert exc.value.code == "unknown_vid"
    assert log_size(platform) == size
    assert holdings(platform, asset)[asha.id] == 1


def test_a_holder_who_gives_away_every_share_holds_none(
    platform: Platform, asset: int, owners: list[Resident]
) -> None:
    asha, bala, chitra = owners
    platform.bus.handle(community_commands.TransferShares(asset, asha.id, bala.vid, 1, "asha"))
    assert holdings(platform, asset) == {bala.id: 3, chitra.id: 4}
    view = community_queries.resident_shares(platform.uow(), asha.id)
    assert view.holdings == []
    audit_ok(platform)


def test_audit_verify_catches_holdings_that_disagree_with_the_share_events(
    platform: Platform, asset: int, owners: list[Resident]
) -> None:
    audit_ok(platform)
    with platform.engine.begin() as conn:
        conn.execute(
            update(community_tables.share_holdings)
            .where(community_tables.share_holdings.c.resident_id == owners[0].id)
            .values(shares=1000)
        )
    report = audit.verify(platform.uow(), platform.log_signer.verifier)
    assert [p.table for p in report.problems] == ["share_holdings"]
    assert "1000 shares stored but the share events add up to 1" in report.problems[0].message


def test_a_planted_collision_with_a_payout_id_is_an_alarm_and_the_payouts_go_ahead(
    platform: Platform,
    clock: ManualClock,
    asset: int,
    meter: Meter,
    owners: list[Resident],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Payout transfer ids are minted from the payout ids (no client can name them); a
    transfer planted at the next one makes the payouts take the ids after it, with an alarm,
    rather than fail this and every later distribution."""
    earn_in_november(platform, clock, meter)
    move_to(clock, DEC_1 // 10**9 + 3600)
    with platform.uow() as uow:
        first_payout = uow.community.next_distribution_ids()[1]
    planted = payout_transfer_id(first_payout + 1, Ledger.CARBON)
    platform.bus.handle(
        ledger_commands.CreateAccounts(
            [NewAccount(1, Ledger.CARBON, 1), NewAccount(2, Ledger.CARBON, 1)]
        )
    )
    uow = unit_of_work(platform.engine, platform.clock, log_signer=platform.log_signer)
    with uow:
        last = uow.ledger.lock_ledger()
        foreign = Transfer(planted, 1, 2, 5, Ledger.CARBON)
        assert not ledger_service.post_transfers(
            uow, [foreign], last_timestamp=last, atomic=True
        ).failed
        uow.commit()

    with caplog.at_level(logging.ERROR, logger="cityshare.community.handlers"):
        [outcome] = settle(platform)

    assert outcome.status == Status.DISTRIBUTED
    assert [p.id for p in outcome.payouts] == [first_payout + 2 + i for i in range(3)]
    assert [balance(platform, r.id, Ledger.CREDIT) for r in owners] == [114, 229, 457]
    assert [balance(platform, r.id, Ledger.CARBON) for r in owners] == [123, 246, 492]
    [alarm] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert str(planted) in alarm.getMessage()
    audit_ok(platform)
