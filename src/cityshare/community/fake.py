"""An in-memory community repository, so that the share handlers' rules can be tested without
a database (`tests/unit/test_community_handlers.py`); the real-database tests stay the proof
that `CommunityRepository` behaves the same.

It holds the share side of `CommunityRepository` (`model.ShareStore`: events and the holdings
derived from them),
with the same answers and the same refusal (a holding never goes below zero); a handler that
reaches for anything else (distributions, payouts) fails loudly with AttributeError.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from cityshare.community.model import TRANSFER, ShareEventRow, ShareStore


class FakeCommunityRepository(ShareStore):
    """`ShareStore` in memory (mypy checks the methods' signatures against the protocol)."""

    def __init__(self) -> None:
        self.events: list[ShareEventRow] = []
        #: (asset, resident) -> shares; a holding that reaches 0 is removed, as in the table.
        self.share_holdings: dict[tuple[int, int], int] = {}

    def next_event_id(self) -> int:
        return max((e.id for e in self.events), default=0) + 1

    def insert_events(self, rows: Sequence[ShareEventRow]) -> None:
        taken = {e.id for e in self.events}
        for row in rows:
            if row.id in taken:
                raise ValueError(f"share event {row.id} exists")  # the primary key
            taken.add(row.id)
        self.events += rows

    def holding(self, asset_id: int, resident_id: int) -> int:
        return self.share_holdings.get((asset_id, resident_id), 0)

    def add_to_holding(self, asset_id: int, resident_id: int, delta: int) -> None:
        """Change a holder's shares by `delta`; a holding that reaches 0 is removed."""
        new = self.holding(asset_id, resident_id) + delta
        if new < 0:
            raise ValueError("a holding cannot go below zero")
        if new == 0:
            self.share_holdings.pop((asset_id, resident_id), None)
        else:
            self.share_holdings[(asset_id, resident_id)] = new

    def total_shares(self, asset_id: int) -> int:
        return sum(s for (a, _), s in self.share_holdings.items() if a == asset_id)

    def holdings(self, asset_id: int) -> dict[int, int]:
        """The asset's current holders: resident -> shares."""
        return dict(sorted((r, s) for (a, r), s in self.share_holdings.items() if a == asset_id))

    def holdings_of(self, resident_id: int) -> dict[int, int]:
        """A resident's holdings: asset -> shares."""
        return dict(sorted((a, s) for (a, r), s in self.share_holdings.items() if r == resident_id))

    def holders_among(self, asset_id: int, resident_ids: Collection[int]) -> set[int]:
        """Those of `resident_ids` who hold or ever held shares of the asset."""
        wanted = set(resident_ids)
        return {e.to_id for e in self.events if e.asset_id == asset_id and e.to_id in wanted}

    def replayed_holdings(self) -> dict[tuple[int, int], int]:
        """Every (asset, resident) -> shares summed from the events (nonzero ones)."""
        sums: dict[tuple[int, int], int] = {}
        for e in self.events:
            sums[(e.asset_id, e.to_id)] = sums.get((e.asset_id, e.to_id), 0) + e.shares
            if e.kind == TRANSFER:
                sums[(e.asset_id, e.from_id)] = sums.get((e.asset_id, e.from_id), 0) - e.shares
        return {k: v for k, v in sums.items() if v != 0}

    def stored_holdings(self) -> dict[tuple[int, int], int]:
        return dict(self.share_holdings)

    def distribution_sums(self) -> list[tuple[int, int, int, int, int, int, int]]:
        return []  # no distributions in memory
