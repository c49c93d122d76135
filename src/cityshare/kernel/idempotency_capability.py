"""Idempotency keys: the stored first answers to keyed writes, and their purge."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from cityshare.kernel import idempotency
from cityshare.kernel.capability import Capability, CommandHandler, Job
from cityshare.kernel.idempotency_commands import PurgeIdempotencyKeys
from cityshare.kernel.idempotency_repo import IdempotencyRepository

#: How often the scheduler forgets the answers to keyed writes older than their retention.
#: Each keyed write purges a few expired answers; this bounds how long any outlives the
#: retention when no keyed writes come.
PURGE_SECONDS = 3600.0


def _handlers(platform: Any) -> Mapping[type, CommandHandler]:
    return {
        PurgeIdempotencyKeys: functools.partial(
            idempotency.purge_expired,
            retention_seconds=platform.settings.idempotency_retention_seconds,
        ),
    }


CAPABILITY = Capability(
    "idempotency",
    repositories={"idempotency": lambda conn, sealer: IdempotencyRepository(conn, sealer)},
    handlers=_handlers,
    jobs=[
        Job("purge-idempotency-keys", lambda _: PURGE_SECONDS, PurgeIdempotencyKeys),
    ],
)
