"""The bus hands the events a command's handler raised to their handlers, after the command."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from cityshare.kernel.bus import MessageBus
from cityshare.kernel.messages import Command, Event


@dataclass(frozen=True)
class Share(Command):
    amount: int


@dataclass(frozen=True)
class Shared(Event):
    amount: int


@dataclass(frozen=True)
class Thanked(Event):
    amount: int


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def add_event(self, event: Event) -> None:
        self.events.append(event)

    def collect_new_events(self) -> Iterator[Event]:
        while self.events:
            yield self.events.pop(0)


def test_raised_events_reach_every_handler_in_order_and_a_failing_one_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Any] = []

    def share(cmd: Share, uow: FakeUnitOfWork) -> str:
        uow.add_event(Shared(cmd.amount))
        uow.add_event(Thanked(cmd.amount))
        return "done"

    def broken(event: Shared) -> None:
        raise RuntimeError("boom")

    bus = MessageBus(
        uow_factory=FakeUnitOfWork,  # type: ignore[arg-type]
        command_handlers={Share: share},
        event_handlers={Shared: [seen.append, broken, seen.append], Thanked: [seen.append]},
    )
    with caplog.at_level(logging.ERROR, logger="cityshare.kernel.bus"):
        assert bus.handle(Share(5)) == "done"
    assert seen == [Shared(5), Shared(5), Thanked(5)]
    assert "event handler" in caplog.text
