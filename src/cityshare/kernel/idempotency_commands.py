"""The command of the idempotency keys kept for keyed writes."""

from __future__ import annotations

from dataclasses import dataclass

from cityshare.kernel.messages import Command


@dataclass(frozen=True, slots=True)
class PurgeIdempotencyKeys(Command):
    """Forget the answers to keyed writes older than the retention setting (`limit` per
    transaction, until none is left)."""

    limit: int = 10_000
