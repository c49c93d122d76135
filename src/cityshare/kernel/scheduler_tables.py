"""The scheduler's lease (kernel/scheduler.py): which scheduler may run the periodic jobs."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, String, Table

from cityshare.kernel.tables import metadata

#: One row per lease (the scheduler's is named "scheduler"): the scheduler instance that holds
#: it (host:pid:random) until `expires_at` (ns since the epoch, by the holder's clock). Not a
#: record of the platform: not logged, not sealed; it only decides which process acts, and the
#: jobs it guards are idempotent.
scheduler_leases = Table(
    "scheduler_leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
)
