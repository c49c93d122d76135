"""Which table each kind of log entry belongs to: the record registry of `cityshare audit verify`.

The binary ledger entries (accounts, transfers, lapsed holds) are known here; every JSON record
type comes from a capability's `records` and every derived check from its `checks`
(kernel/capability.py), gathered from `cityshare.capabilities.CAPABILITIES` when first needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cityshare.kernel.capability import DerivedCheck
from cityshare.ledger.model import TransferRecord
from cityshare.tlog import entries


@dataclass(frozen=True, slots=True)
class RecordType:
    """Where the rows of one JSON record type live and how a row becomes its leaf again."""

    table: str
    #: Re-encode a stored row (column name -> value) as the exact bytes of its log entry.
    encode: Callable[[Mapping[str, Any]], bytes]
    #: The primary key column; the entry carries the same value under the field of this name.
    key: str = "id"


def record_types() -> Mapping[str, RecordType]:
    """JSON record `type` -> its table: every capability's `records` (kernel/capability.py).
    A JSON leaf of a type not listed here is reported as a problem."""
    return _registry()[0]


def derived_checks() -> Sequence[DerivedCheck]:
    """State capabilities derive from their logged records and keep beside them (e.g. share
    holdings, the sum of share events): each check runs in the audit's read transaction and
    yields (table, key, message) for every derived row that is not what the records say."""
    return _registry()[1]


@functools.cache
def _registry() -> tuple[dict[str, RecordType], tuple[DerivedCheck, ...]]:
    # The platform's list sits above the verifier, which every capability's records feed:
    # imported when first needed, not at import.
    from cityshare.capabilities import CAPABILITIES

    types: dict[str, RecordType] = {}
    for capability in CAPABILITIES:
        for record in capability.records:
            register_record_type(
                record.type, record.table, record.encode, key=record.key, registry=types
            )
    return types, tuple(check for capability in CAPABILITIES for check in capability.checks)


#: Tables whose leaves are the binary ledger entries (not available to JSON record types).
_LEDGER_TABLES = frozenset({"accounts", "transfers", "pending_transfers"})


def register_record_type(
    record_type: str,
    table: str,
    encode: Callable[[Mapping[str, Any]], bytes],
    *,
    key: str = "id",
    registry: dict[str, RecordType],
) -> None:
    """Declare that JSON entries of `record_type` log the rows of `table`, keyed by `key`.

    One type per table, so that "every row has exactly one leaf" can be counted per table.
    """
    if not record_type or record_type in registry:
        raise ValueError(f"record type {record_type!r} is empty or already registered")
    if table in _LEDGER_TABLES or any(r.table == table for r in registry.values()):
        raise ValueError(f"the rows of {table} are already logged by another entry type")
    registry[record_type] = RecordType(table, encode, key)


class UnknownEntryError(LookupError):
    """A decoded entry that no table claims (the message says why)."""


def entry_key(
    entry: entries.Entry, registry: Mapping[str, RecordType] | None = None
) -> tuple[str, int | str]:
    """The table and primary key of the row an entry logs. Raises :class:`UnknownEntryError`."""
    if isinstance(entry, TransferRecord):
        return "transfers", entry.id
    if isinstance(entry, entries.AccountEntry):
        return "accounts", entry.account.id
    if isinstance(entry, entries.HoldExpiredEntry):
        return "pending_transfers", entry.pending_id
    registry = record_types() if registry is None else registry
    record_type = registry.get(entry.type)
    if record_type is None:
        raise UnknownEntryError(f"a {entry.type!r} record, a type no table is registered for")
    key = entry.fields.get(record_type.key)
    if not isinstance(key, int | str) or isinstance(key, bool):
        raise UnknownEntryError(
            f"a {entry.type!r} record without an integer or text {record_type.key!r}"
        )
    return record_type.table, key
