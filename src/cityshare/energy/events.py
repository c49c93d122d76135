"""Events of energy."""

from __future__ import annotations

from dataclasses import dataclass

from cityshare.kernel.messages import Event


@dataclass(frozen=True, slots=True)
class ReadingsIngested(Event):
    #: New readings stored (accepted or anomalous); duplicates and rejections not counted.
    stored: int
    #: Intervals credited (joined the chain) in the same commit.
    intervals: int
