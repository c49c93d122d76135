"""Events: facts that happened, named in the past tense. Handlers in `services` react to them."""

from __future__ import annotations

from dataclasses import dataclass


class Event:
    """Base class of every domain event."""


@dataclass(frozen=True, slots=True)
class TransfersCommitted(Event):
    count: int
    last_timestamp: int


@dataclass(frozen=True, slots=True)
class PendingTransfersExpired(Event):
    count: int


@dataclass(frozen=True, slots=True)
class ReadingsIngested(Event):
    #: New readings stored (accepted or anomalous); duplicates and rejections not counted.
    stored: int
    #: Intervals credited (joined the chain) in the same commit.
    intervals: int
