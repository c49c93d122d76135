"""Sealed tables: rows that carry a seal (kernel/seal.py) over all their other columns.

A repository seals each row of these tables as it writes it and checks the seal of each row it
reads before the row is used; a row whose seal fails is logged at ERROR and never used (its
repository says what "not used" means for it). `audit verify` checks every row of every table
:func:`sealed_tables` finds: a table is sealed by having a `seal` column, so a capability seals
one of its tables by declaring that column, and nothing here names it. A migration that adds a
column to one of them must seal its rows again (the seal covers every column but itself).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Table

from cityshare.kernel.seal import Sealer
from cityshare.kernel.tables import metadata

log = logging.getLogger(__name__)

#: The column holding a row's seal.
SEAL = "seal"



def sealed_tables() -> tuple[Table, ...]:
    """Every table whose rows are sealed (those with a `seal` column), in dependency order;
    every capability's tables must be declared first (`cityshare.capabilities` does it)."""
    return tuple(t for t in metadata.sorted_tables if SEAL in t.c)


class BrokenSealError(LookupError):
    """A stored row whose seal does not verify (already logged): it must not be used."""


def fields(table: Table, row: Mapping[Any, Any]) -> dict[str, Any]:
    """What the seal of `row` covers: every column of `table` but the seal, by name."""
    return {c.name: row[c.name] for c in table.columns if c.name != SEAL}


def require(sealer: Sealer | None) -> Sealer:
    if sealer is None:
        raise RuntimeError("this unit of work reads or writes sealed rows but has no seal key")
    return sealer


def sealed(sealer: Sealer | None, table: Table, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` (every column but the seal) with their seal added, ready to insert."""
    row = fields(table, values)
    return {**row, SEAL: require(sealer).seal(table.name, row)}


def intact(sealer: Sealer | None, table: Table, row: Mapping[Any, Any], what: str) -> bool:
    """Whether the stored `row` carries its seal; if not, say so at ERROR (the caller must not
    use the row). `what` names the row in the log line (never a secret of it)."""
    if require(sealer).verify(table.name, fields(table, row), row[SEAL]):
        return True
    log.error(
        "%s %s: the row's seal does not verify (changed outside the platform, or sealed with "
        "another key); it is not used. `cityshare audit verify` lists every such row",
        table.name,
        what,
    )
    return False
