"""An in-memory billing repository, so that the rules of price lists, provider choices and
top-ups can be tested without a database (`tests/unit/test_billing_handlers.py`); the
real-database tests (tests/integration/test_billing_service.py) stay the proof that
`BillingRepository` behaves the same.

It holds `model.PricingStore`, the part of `BillingRepository` that `set_price_list`,
`choose_provider` and `top_up_wallet` use, with the same answers, orders and refusals (a
primary key or top-up reference taken twice); a handler that reaches for anything else (bills,
runs, arrears, statements) fails loudly with AttributeError.
"""

from __future__ import annotations

from collections.abc import Collection

from cityshare.billing.model import ChoiceRow, PriceListRow, PricingStore, TopUpRow


class FakeBillingRepository(PricingStore):
    """`PricingStore` in memory (mypy checks the methods' signatures against the protocol)."""

    def __init__(self) -> None:
        self.price_lists: list[PriceListRow] = []
        self.choices: list[ChoiceRow] = []
        self.top_ups: list[TopUpRow] = []

    # -- ids: the largest one stored plus one, as `SELECT max(id) + 1` ----------------------

    def next_price_list_id(self) -> int:
        return max((r.id for r in self.price_lists), default=0) + 1

    def next_choice_id(self) -> int:
        return max((r.id for r in self.choices), default=0) + 1

    def next_top_up_id(self) -> int:
        return max((r.id for r in self.top_ups), default=0) + 1

    # -- price lists and choices -------------------------------------------------------------

    def insert_price_list(self, row: PriceListRow) -> None:
        if any(r.id == row.id for r in self.price_lists):
            raise ValueError(f"price list {row.id} exists")  # the primary key
        self.price_lists.append(row)

    def price_lists_of(self, provider_ids: Collection[int]) -> list[PriceListRow]:
        wanted = set(provider_ids)
        rows = [r for r in self.price_lists if r.provider_id in wanted]
        return sorted(rows, key=lambda r: (r.provider_id, r.effective_from, r.id))

    def insert_choice(self, row: ChoiceRow) -> None:
        if any(r.id == row.id for r in self.choices):
            raise ValueError(f"provider choice {row.id} exists")  # the primary key
        self.choices.append(row)

    def choices_of(self, resident_ids: Collection[int]) -> list[ChoiceRow]:
        wanted = set(resident_ids)
        rows = [r for r in self.choices if r.resident_id in wanted]
        return sorted(rows, key=lambda r: (r.resident_id, r.id))

    def customers_among(self, provider_id: int, resident_ids: Collection[int]) -> set[int]:
        """Those of `resident_ids` who ever chose `provider_id` (no bills are held here, so
        none was billed by it)."""
        wanted = set(resident_ids)
        return {r.resident_id for r in self.choices if r.provider_id == provider_id} & wanted

    # -- top-ups -----------------------------------------------------------------------------

    def top_up_by_reference(self, reference: str) -> TopUpRow | None:
        return next((r for r in self.top_ups if r.reference == reference), None)

    def insert_top_up(self, row: TopUpRow) -> None:
        if any(r.id == row.id for r in self.top_ups):
            raise ValueError(f"top-up {row.id} exists")  # the primary key
        if self.top_up_by_reference(row.reference) is not None:
            raise ValueError(f"top-up reference {row.reference!r} exists")  # ux_top_ups_reference
        self.top_ups.append(row)
