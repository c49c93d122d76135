"""Community's audit-log records: how each fact it writes becomes a leaf, and is checked again.

Every share event, distribution and payout is a leaf of the audit log, written in the
transaction that stores its row and encoded by the codecs below; `cityshare audit verify`
re-encodes the stored rows with the same codecs (`RECORDS`), so a changed row cannot hide. Each
codec logs every column of its table, in the table's order (the one column list the row types
and the SQL follow): a new column is a new leaf layout, so the tables' columns and the logged
keys must not change. The leaf bytes are a contract (auditors and the twin read them).
`share_holdings` is derived (the events summed), not logged: `community/checks.py` checks it.
"""

from __future__ import annotations

from sqlalchemy import Table

from cityshare.community.tables import community_distributions, community_payouts, share_events
from cityshare.kernel.capability import LoggedRecord
from cityshare.tlog.entries import RecordCodec


def _columns(table: Table) -> tuple[str, ...]:
    return tuple(table.c.keys())


SHARE_EVENT = RecordCodec("share_event", _columns(share_events))
DISTRIBUTION = RecordCodec("community_distribution", _columns(community_distributions))
PAYOUT = RecordCodec("community_payout", _columns(community_payouts))

#: The record types `audit verify` checks both ways: each codec and the table it logs.
RECORDS = [
    LoggedRecord(codec.type, table.name, codec.of_mapping)
    for codec, table in (
        (SHARE_EVENT, share_events),
        (DISTRIBUTION, community_distributions),
        (PAYOUT, community_payouts),
    )
]
