"""Community's checks of state derived from its logged records, run by `audit verify`."""

from __future__ import annotations

from cityshare.community.uow import CommunityUnitOfWork


def derived_problems(uow: CommunityUnitOfWork) -> list[tuple[str, int | str | None, str]]:
    """What `audit verify` finds wrong with state derived from the logged records: holdings
    that are not the sum of the share events, distributions whose payouts do not add up.
    (table, key, message) each; runs inside the caller's open unit of work."""
    repo = uow.community
    problems: list[tuple[str, int | str | None, str]] = []
    stored = repo.stored_holdings()
    replayed = repo.replayed_holdings()
    for asset_id, resident_id in sorted(stored.keys() | replayed.keys()):
        have = stored.get((asset_id, resident_id), 0)
        want = replayed.get((asset_id, resident_id), 0)
        if have != want:
            problems.append(
                (
                    "share_holdings",
                    f"{asset_id}/{resident_id}",
                    f"share_holdings {asset_id}/{resident_id}: {have} shares stored but the "
                    f"share events add up to {want}",
                )
            )
    for dist_id, credit, carbon, _, _, paid_credit, paid_carbon in repo.distribution_sums():
        if (credit, carbon) != (paid_credit, paid_carbon):
            problems.append(
                (
                    "community_distributions",
                    dist_id,
                    f"community_distributions {dist_id}: distributes {credit} milli-points and "
                    f"{carbon} g but its payouts add up to {paid_credit} and {paid_carbon}",
                )
            )
    return problems
