"""Community assets: shares held by residents, and each settlement period's earnings paid out
to them pro rata (the command handlers).

An asset is an organisation of kind `community`; its meter is a device it owns, so signed
readings credit the asset's own CREDIT, CARBON and ENERGY wallets (energy/handlers.py).

**Shares.** Issuing and transferring shares are immutable `share_events` rows, each a leaf of
the audit log; `share_holdings` (the events summed per holder) is kept in the same
transaction for fast reads, and `audit verify` sums the events again and compares.

**Distribution of one period** (`DistributeCommunityEarnings`), in one transaction under the
ledger lock:

- the amount, per ledger, is what the asset's wallet held at the period end (its net posted
  balance after the last transfer at or before that instant), as far as the wallet still
  holds it now (its available balance): so earnings credited after the end wait for the next
  period, and a period settled late never pays out what an earlier one already paid;
- CREDIT (milli-points) and CARBON (grams CO2e) are both distributed: the carbon credits the
  asset's export avoided belong to its owners as much as the points do. ENERGY is the record
  of the asset's net export and stays with the asset;
- the holders are those at the period end (share events at or before it), and each ledger's
  amount is split with `community.model.split_pro_rata`, so the payouts add up to it exactly;
- the payouts are posted as one linked chain (LINKED on all but the last, and atomic): every
  holder is paid or none is; the distribution row and one payout row per holder are logged in
  the same commit. An empty wallet or no holders writes nothing (the earnings wait).

Transfer ids: `COMMUNITY_TRANSFER_BASE | payout_id << 1 | (ledger is CARBON)`, `user_data` the
distribution id. A distribution exists at most once per (asset, period end) (a unique index),
and its payout ids are fixed when it is written, so a rerun for the same period finds it and
pays nothing twice. The base lies in the platform's own id range (above 2^62; clients are
refused any id from 2^61 up, `ledger.ids`; one found taken anyway is skipped with an alarm)
and above every id energy's intervals can reach (2^62 | id << 2 stays below it for interval
ids under 3 * 2^58).

The audit-log records are `community/records.py`, the checks of derived state
`community/checks.py`, the read side `community/queries.py`.
"""

from __future__ import annotations

import enum
import logging
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field

from cityshare.community import commands, records
from cityshare.community.model import (
    ISSUE,
    MAX_TOTAL_SHARES,
    TRANSFER,
    CommunityError,
    DistributionRow,
    PayoutRow,
    SettlementPeriod,
    ShareEventRow,
    boundaries,
    is_boundary,
    split_pro_rata,
)
from cityshare.community.queries import community_asset
from cityshare.community.uow import CommunityUnitOfWork
from cityshare.identity.model import is_valid_vid
from cityshare.identity.organisations import OrgKind
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger.handlers import post_transfers
from cityshare.ledger.ids import COMMUNITY_TRANSFERS
from cityshare.ledger.model import Ledger, Transfer, TransferFlags

log = logging.getLogger(__name__)

COMMUNITY_TRANSFER_BASE = COMMUNITY_TRANSFERS.first
MAX_PAYOUT_ID = (COMMUNITY_TRANSFERS.last - COMMUNITY_TRANSFER_BASE) >> 1
#: Ended periods one settlement run catches up on per asset (the newest ones; earnings of any
#: older unsettled period are in the wallet still and go to the oldest of these).
MAX_CATCH_UP = 400
DISTRIBUTED_LEDGERS = (Ledger.CREDIT, Ledger.CARBON)


class CommunityCode(enum.IntEnum):
    """Transfer codes of payouts to holders."""

    CREDIT_PAYOUT = 4101
    CARBON_PAYOUT = 4102


def payout_transfer_id(payout_id: int, ledger: Ledger) -> int:
    """In [2^62 + 3 * 2^60, 2^63): above every energy posting (see energy/handlers.py)."""
    if not 0 < payout_id <= MAX_PAYOUT_ID:
        raise ValueError("payout ids are 1 … 2^59-1")
    return COMMUNITY_TRANSFER_BASE | (payout_id << 1) | (1 if ledger == Ledger.CARBON else 0)


# -- command handlers: shares ----------------------------------------------------------------


def _check_count(shares: int) -> None:
    if (
        isinstance(shares, bool)
        or not isinstance(shares, int)
        or not 0 < shares <= MAX_TOTAL_SHARES
    ):
        raise CommunityError(
            "invalid_shares", f"a number of shares is a whole number 1 … {MAX_TOTAL_SHARES}"
        )


def _check_vid(vid: str) -> None:
    if not is_valid_vid(vid):
        raise CommunityError("invalid_vid", "a VID is 16 digits with a Verhoeff check digit")


def _resident_of(uow: CommunityUnitOfWork, vid: str) -> int:
    resident = uow.identity.resident_by_vid(vid)
    if resident is None:
        raise CommunityError("unknown_vid", "no enrolled resident has this virtual id")
    return resident


def issue_shares(cmd: commands.IssueShares, uow: CommunityUnitOfWork) -> list[ShareEventRow]:
    if not cmd.grants:
        raise CommunityError("invalid_shares", "name at least one resident to issue shares to")
    for grant in cmd.grants:
        _check_vid(grant.vid)
        _check_count(grant.shares)
    with uow:
        uow.ledger.lock_ledger()
        community_asset(uow, cmd.asset_id)
        repo = uow.community
        residents = [_resident_of(uow, g.vid) for g in cmd.grants]
        issued = sum(g.shares for g in cmd.grants)
        total = repo.total_shares(cmd.asset_id)
        if total + issued > MAX_TOTAL_SHARES:
            raise CommunityError(
                "too_many_shares",
                f"the asset has {total} shares; at most {MAX_TOTAL_SHARES} may exist",
            )
        now = uow.clock.now_ns()
        actor = cmd.actor[:200]
        first = repo.next_event_id()
        rows = [
            ShareEventRow(first + i, cmd.asset_id, ISSUE, 0, resident, g.shares, actor, now)
            for i, (resident, g) in enumerate(zip(residents, cmd.grants, strict=True))
        ]
        repo.insert_events(rows)
        gained: dict[int, int] = {}
        for row in rows:
            gained[row.to_id] = gained.get(row.to_id, 0) + row.shares
        for resident, shares in gained.items():
            repo.add_to_holding(cmd.asset_id, resident, shares)
        uow.log.append([records.SHARE_EVENT.of(r) for r in rows])
        uow.commit()
    return rows


def transfer_shares(cmd: commands.TransferShares, uow: CommunityUnitOfWork) -> ShareEventRow:
    _check_vid(cmd.to_vid)
    _check_count(cmd.shares)
    with uow:
        uow.ledger.lock_ledger()
        community_asset(uow, cmd.asset_id)
        repo = uow.community
        to = _resident_of(uow, cmd.to_vid)
        if to == cmd.from_resident:
            raise CommunityError("same_holder", "you cannot transfer shares to yourself")
        held = repo.holding(cmd.asset_id, cmd.from_resident)
        if held < cmd.shares:
            raise CommunityError(
                "insufficient_shares", f"you hold {held} shares of this asset, not {cmd.shares}"
            )
        row = ShareEventRow(
            repo.next_event_id(), cmd.asset_id, TRANSFER, cmd.from_resident, to, cmd.shares,
            cmd.actor[:200], uow.clock.now_ns(),
        )  # fmt: skip
        repo.insert_events([row])
        repo.add_to_holding(cmd.asset_id, cmd.from_resident, -cmd.shares)
        repo.add_to_holding(cmd.asset_id, to, cmd.shares)
        uow.log.append([records.SHARE_EVENT.of(row)])
        uow.commit()
    return row


# -- command handlers: distributions ---------------------------------------------------------


class Status(enum.StrEnum):
    DISTRIBUTED = "distributed"
    #: This period was distributed before (by an earlier run): nothing was paid again.
    ALREADY_DISTRIBUTED = "already_distributed"
    #: Nothing was held at the period end (or nothing of it is left): nothing written.
    NOTHING_TO_DISTRIBUTE = "nothing_to_distribute"
    #: Nobody held shares at the period end: the earnings wait for the next period.
    NO_HOLDERS = "no_holders"


@dataclass(frozen=True, slots=True)
class DistributionOutcome:
    asset_id: int
    period_end: int
    status: Status
    distribution: DistributionRow | None = None
    payouts: list[PayoutRow] = field(default_factory=list)
    transfers: int = 0


def distribute_earnings(
    cmd: commands.DistributeCommunityEarnings,
    uow: CommunityUnitOfWork,
    *,
    zone: zoneinfo.ZoneInfo,
    period: SettlementPeriod,
) -> DistributionOutcome:
    if not is_boundary(cmd.period_end_ns, zone, period):
        raise CommunityError(
            "invalid_period_end",
            f"a period end is a {period} settlement boundary (local midnight in {zone.key}"
            + (", on the 1st)" if period == SettlementPeriod.MONTHLY else ")"),
        )
    return _distribute(uow, cmd.asset_id, cmd.period_end_ns)


def _distribute(uow: CommunityUnitOfWork, asset_id: int, period_end: int) -> DistributionOutcome:
    with uow:
        last = uow.ledger.lock_ledger()
        community_asset(uow, asset_id)
        if period_end > uow.clock.now_ns():
            raise CommunityError("period_not_ended", "this settlement period has not ended yet")
        repo = uow.community
        existing = repo.distribution(asset_id, period_end)
        if existing is not None:
            return DistributionOutcome(
                asset_id, period_end, Status.ALREADY_DISTRIBUTED, existing,
                repo.payouts(existing.id),
            )  # fmt: skip
        holdings = repo.holdings_at(asset_id, period_end)
        if not holdings:
            return DistributionOutcome(asset_id, period_end, Status.NO_HOLDERS)
        wallets = {ledger: wallet_account_id(asset_id, ledger) for ledger in DISTRIBUTED_LEDGERS}
        accounts = uow.ledger.load_accounts(set(wallets.values()))
        amounts: dict[Ledger, int] = {}
        for ledger, account_id in wallets.items():
            account = accounts.get(account_id)
            if account is None:
                raise RuntimeError(f"the {ledger.name} wallet of asset {asset_id} is missing")
            # What the wallet held at the period's end, less what has been paid out of it
            # since (earlier periods settled just now): never what was earned after the end.
            held_then = uow.ledger.balance_at(account_id, period_end)
            still_held = held_then - uow.ledger.posted_debits_after(account_id, period_end)
            amounts[ledger] = max(0, min(still_held, account.available))
        if not any(amounts.values()):
            return DistributionOutcome(asset_id, period_end, Status.NOTHING_TO_DISTRIBUTE)
        splits = {ledger: split_pro_rata(amount, holdings) for ledger, amount in amounts.items()}
        dist_id, first_payout = repo.next_distribution_ids()
        first_payout = _clear_payout_ids(uow, first_payout, len(holdings))
        payouts = [
            PayoutRow(
                first_payout + i,
                dist_id,
                asset_id,
                resident,
                holdings[resident],
                splits[Ledger.CREDIT].get(resident, 0),
                splits[Ledger.CARBON].get(resident, 0),
            )
            for i, resident in enumerate(sorted(holdings))
        ]
        batch = _payout_transfers(payouts, wallets, dist_id)
        outcome = post_transfers(uow, batch, last_timestamp=last, atomic=True)
        if outcome.failed:
            # Every amount is at most what the wallet holds and every holder has wallets, so
            # this is a platform fault; nothing has been written.
            index, result = outcome.failed[0]
            raise RuntimeError(
                f"distribution of asset {asset_id} refused by the ledger: transfer {index} {result}"
            )
        row = DistributionRow(
            dist_id, asset_id, period_end, amounts[Ledger.CREDIT], amounts[Ledger.CARBON],
            len(holdings), sum(holdings.values()), uow.clock.now_ns(),
        )  # fmt: skip
        repo.insert_distribution(row)
        repo.insert_payouts(payouts)
        uow.log.append([records.DISTRIBUTION.of(row), *(records.PAYOUT.of(p) for p in payouts)])
        uow.commit()
    log.info(
        "asset %d: distributed %d milli-points and %d g CO2e to %d holders (period end %d)",
        asset_id, row.credit_milli, row.carbon_g, row.holders, period_end,
    )  # fmt: skip
    return DistributionOutcome(
        asset_id, period_end, Status.DISTRIBUTED, row, payouts, len(outcome.records)
    )


def _clear_payout_ids(uow: CommunityUnitOfWork, first: int, n: int) -> int:
    """The first of `n` payout ids from `first` whose transfer ids are all free.

    Payout ids are handed out in order and their transfer ids minted from them, which no client
    can name (`ledger.ids`); a transfer already there (planted in the store, a bug) would make
    the ledger refuse the chain, and as the ids are taken again by the next distribution, every
    asset's payouts after it. So a taken id is an alarm (logged at ERROR with the ids) and the
    payouts are numbered after it instead, never a wedge.
    """
    while True:
        ids = [
            payout_transfer_id(first + i, ledger)
            for i in range(n)
            for ledger in DISTRIBUTED_LEDGERS
        ]
        taken = uow.ledger.load_transfers(ids)
        if not taken:
            return first
        after = max((tid - COMMUNITY_TRANSFER_BASE) >> 1 for tid in taken) + 1
        log.error(
            "ALARM: payout transfer ids %s are taken by transfers no payout made; the payouts "
            "are numbered from %d instead of %d",
            sorted(taken), after, first,
        )  # fmt: skip
        first = after


def _payout_transfers(
    payouts: list[PayoutRow], wallets: Mapping[Ledger, int], dist_id: int
) -> list[Transfer]:
    linked = int(TransferFlags.LINKED)
    batch: list[Transfer] = []
    for ledger, code in (
        (Ledger.CREDIT, CommunityCode.CREDIT_PAYOUT),
        (Ledger.CARBON, CommunityCode.CARBON_PAYOUT),
    ):
        for p in payouts:
            amount = p.credit_milli if ledger == Ledger.CREDIT else p.carbon_g
            if amount:
                batch.append(
                    Transfer(
                        payout_transfer_id(p.id, ledger),
                        wallets[ledger],
                        wallet_account_id(p.resident_id, ledger),
                        amount,
                        ledger,
                        int(code),
                        linked,
                        user_data=dist_id,
                    )
                )
    if batch:  # the last transfer closes the chain
        batch[-1] = batch[-1]._replace(flags=0)
    return batch


def settle(
    cmd: commands.SettleCommunityAssets,
    uow: CommunityUnitOfWork,
    *,
    zone: zoneinfo.ZoneInfo,
    period: SettlementPeriod,
) -> list[DistributionOutcome]:
    """Each (asset, ended period) in its own transaction, oldest period first per asset."""
    if cmd.period_end_ns is not None and not is_boundary(cmd.period_end_ns, zone, period):
        raise CommunityError(
            "invalid_period_end", f"a period end is a {period} settlement boundary in {zone.key}"
        )
    with uow:
        now = uow.clock.now_ns()
        if cmd.asset_id is not None:
            assets = [community_asset(uow, cmd.asset_id)]
        else:
            assets = uow.identity.organisations(OrgKind.COMMUNITY.value)
        due: list[tuple[int, int]] = []
        for asset in assets:
            if cmd.period_end_ns is not None:
                due.append((asset.id, cmd.period_end_ns))
                continue
            after = uow.community.last_period_end(asset.id) or asset.created_at
            due += [
                (asset.id, end) for end in boundaries(after, now, zone, period, limit=MAX_CATCH_UP)
            ]
    return [_distribute(uow, asset_id, end) for asset_id, end in due]
