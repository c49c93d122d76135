"""The share handlers' rules on an in-memory unit of work (no database): who may be issued
shares, how many may exist, what a transfer needs, and that a refusal writes nothing.
The real-database tests (tests/integration/test_community_service.py) stay the proof that the
store does the same."""

from __future__ import annotations

import random
from typing import Any

import pytest

from cityshare.community import checks, handlers, records
from cityshare.community.commands import IssueShares, ShareGrant, TransferShares
from cityshare.community.fake import FakeCommunityRepository
from cityshare.community.model import (
    ISSUE,
    MAX_TOTAL_SHARES,
    TRANSFER,
    CommunityError,
    ShareEventRow,
)
from cityshare.identity.model import OrganisationRow, new_vid
from cityshare.identity.organisations import OrgKind
from cityshare.identity.residents import ORG_ID_BASE
from fakes import FakeUnitOfWork

ASSET = ORG_ID_BASE + 1
UTILITY = ORG_ID_BASE + 2
MISSING = ORG_ID_BASE + 3
ASHA, BALA, CHITRA = 1, 2, 3


class FakeIdentity:
    def __init__(self, organisations: list[OrganisationRow], vids: dict[str, int]) -> None:
        self.orgs = {o.id: o for o in organisations}
        self.vids = vids

    def organisation(self, org_id: int) -> OrganisationRow | None:
        return self.orgs.get(org_id)

    def resident_by_vid(self, vid: str) -> int | None:
        return self.vids.get(vid)


def community_uow(vids: dict[str, int]) -> FakeUnitOfWork:
    """What the share handlers use of a unit of work (`tests/fakes.py`): identity's answers
    about the two organisations and the residents' VIDs, and the in-memory share repository."""
    identity = FakeIdentity(
        [
            OrganisationRow(ASSET, OrgKind.COMMUNITY.value, "Solar Park", None, 0),
            OrganisationRow(UTILITY, OrgKind.PROVIDER.value, "Utility", None, 0),
        ],
        vids,
    )
    return FakeUnitOfWork(identity=identity, community=FakeCommunityRepository())


rng = random.Random(10)
VID = {r: new_vid(rng) for r in (ASHA, BALA, CHITRA)}
UNKNOWN_VID = new_vid(rng)


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return community_uow({vid: r for r, vid in VID.items()})


def issue(uow: Any, *grants: tuple[int, int], asset: int = ASSET) -> list[ShareEventRow]:
    cmd = IssueShares(asset, [ShareGrant(VID[r], n) for r, n in grants], "admin:ops")
    return handlers.issue_shares(cmd, uow)


def written(uow: FakeUnitOfWork) -> tuple[Any, ...]:
    return (list(uow.community.events), dict(uow.community.share_holdings), list(uow.log.leaves))


def test_issued_shares_are_events_holdings_and_leaves_in_one_commit(uow: FakeUnitOfWork) -> None:
    rows = issue(uow, (ASHA, 400), (BALA, 100), (ASHA, 100))

    now = uow.clock.now_ns()
    assert rows == [
        ShareEventRow(1, ASSET, ISSUE, 0, ASHA, 400, "admin:ops", now),
        ShareEventRow(2, ASSET, ISSUE, 0, BALA, 100, "admin:ops", now),
        ShareEventRow(3, ASSET, ISSUE, 0, ASHA, 100, "admin:ops", now),
    ]
    assert uow.community.holdings(ASSET) == {ASHA: 500, BALA: 100}
    assert uow.log.leaves == [records.SHARE_EVENT.of(r) for r in rows]
    assert (uow.commits, uow.ledger.locks) == (1, 1)
    assert checks.derived_problems(uow) == []
    # Ids go on from the last event.
    assert [r.id for r in issue(uow, (CHITRA, 1))] == [4]


@pytest.mark.parametrize(
    ("grants", "code"),
    [
        ([], "invalid_shares"),
        ([ShareGrant(VID[ASHA], 0)], "invalid_shares"),
        ([ShareGrant(VID[ASHA], True)], "invalid_shares"),
        ([ShareGrant(VID[ASHA], MAX_TOTAL_SHARES + 1)], "invalid_shares"),
        ([ShareGrant("1234567890123456", 1)], "invalid_vid"),
        ([ShareGrant(VID[ASHA], 5), ShareGrant(UNKNOWN_VID, 1)], "unknown_vid"),
    ],
)
def test_an_issue_with_a_bad_grant_is_refused_whole(
    uow: FakeUnitOfWork, grants: list[ShareGrant], code: str
) -> None:
    with pytest.raises(CommunityError) as refused:
        handlers.issue_shares(IssueShares(ASSET, grants, "admin:ops"), uow)
    assert refused.value.code == code
    assert written(uow) == ([], {}, [])
    assert uow.commits == 0


@pytest.mark.parametrize(("asset", "code"), [(UTILITY, "not_community"), (MISSING, "not_found"),
                                             (ASHA, "not_found")])  # fmt: skip
def test_only_a_community_asset_has_shares(uow: FakeUnitOfWork, asset: int, code: str) -> None:
    with pytest.raises(CommunityError) as refused:
        issue(uow, (ASHA, 1), asset=asset)
    assert refused.value.code == code
    assert written(uow) == ([], {}, [])


def test_no_more_than_the_most_shares_may_exist(uow: FakeUnitOfWork) -> None:
    issue(uow, (ASHA, MAX_TOTAL_SHARES - 10))
    before = written(uow)
    with pytest.raises(CommunityError) as refused:
        issue(uow, (BALA, 6), (CHITRA, 5))
    assert refused.value.code == "too_many_shares"
    assert written(uow) == before
    issue(uow, (BALA, 10))
    assert uow.community.total_shares(ASSET) == MAX_TOTAL_SHARES


def test_a_transfer_moves_shares_and_a_holding_emptied_is_gone(uow: FakeUnitOfWork) -> None:
    issue(uow, (ASHA, 300))
    row = handlers.transfer_shares(TransferShares(ASSET, ASHA, VID[BALA], 100, "resident"), uow)
    assert row == ShareEventRow(2, ASSET, TRANSFER, ASHA, BALA, 100, "resident", row.at)
    assert uow.community.holdings(ASSET) == {ASHA: 200, BALA: 100}
    assert uow.log.leaves[-1] == records.SHARE_EVENT.of(row)

    handlers.transfer_shares(TransferShares(ASSET, ASHA, VID[CHITRA], 200, "resident"), uow)
    assert uow.community.holdings(ASSET) == {BALA: 100, CHITRA: 200}
    assert uow.community.holders_among(ASSET, [ASHA, BALA, CHITRA]) == {ASHA, BALA, CHITRA}
    assert checks.derived_problems(uow) == []


@pytest.mark.parametrize(
    ("sender", "to", "shares", "code"),
    [
        (ASHA, ASHA, 1, "same_holder"),
        (ASHA, BALA, 301, "insufficient_shares"),
        (BALA, ASHA, 1, "insufficient_shares"),
        (ASHA, BALA, 0, "invalid_shares"),
        (ASHA, CHITRA, -5, "invalid_shares"),
    ],
)
def test_a_transfer_the_sender_cannot_make_writes_nothing(
    uow: FakeUnitOfWork, sender: int, to: int, shares: int, code: str
) -> None:
    issue(uow, (ASHA, 300))
    before = written(uow)
    with pytest.raises(CommunityError) as refused:
        handlers.transfer_shares(TransferShares(ASSET, sender, VID[to], shares, "r"), uow)
    assert refused.value.code == code
    assert written(uow) == before


def test_a_transfer_to_an_unknown_vid_is_refused(uow: FakeUnitOfWork) -> None:
    issue(uow, (ASHA, 300))
    for vid, code in ((UNKNOWN_VID, "unknown_vid"), ("12345", "invalid_vid")):
        with pytest.raises(CommunityError) as refused:
            handlers.transfer_shares(TransferShares(ASSET, ASHA, vid, 1, "r"), uow)
        assert refused.value.code == code
    assert uow.community.holdings(ASSET) == {ASHA: 300}


def test_the_audit_check_finds_a_holding_the_events_do_not_add_up_to(
    uow: FakeUnitOfWork,
) -> None:
    issue(uow, (ASHA, 300))
    uow.community.share_holdings[(ASSET, ASHA)] = 301  # changed behind the handlers' back
    [(table, key, message)] = checks.derived_problems(uow)
    assert (table, key) == ("share_holdings", f"{ASSET}/{ASHA}")
    assert "301 shares stored but the share events add up to 300" in message
