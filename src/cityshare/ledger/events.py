"""Events of the ledger."""

from __future__ import annotations

from dataclasses import dataclass

from cityshare.kernel.messages import Event


@dataclass(frozen=True, slots=True)
class TransfersCommitted(Event):
    count: int
    last_timestamp: int


@dataclass(frozen=True, slots=True)
class PendingTransfersExpired(Event):
    count: int
