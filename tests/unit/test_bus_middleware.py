"""The bus runs a command's handler through its middleware, in the order registered, inside
its one retry loop and its one event publishing; a plain command passes through untouched."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from cityshare.kernel import idempotency
from cityshare.kernel.bus import MAX_ATTEMPTS, MessageBus, Middleware, Next
from cityshare.kernel.errors import ConflictError
from cityshare.kernel.messages import Command, Event


@dataclass(frozen=True)
class Share(Command):
    amount: int


@dataclass(frozen=True)
class Shared(Event):
    amount: int


class FakeUnitOfWork:
    serial = itertools.count(1)

    def __init__(self) -> None:
        self.id = next(self.serial)
        self.events: list[Event] = []

    def add_event(self, event: Event) -> None:
        self.events.append(event)

    def collect_new_events(self) -> Iterator[Event]:
        while self.events:
            yield self.events.pop(0)


def tracing(name: str, trace: list[str]) -> Middleware:
    """A middleware that records going in and coming out around the rest of the chain."""

    def middleware(
        command: Command, uow: FakeUnitOfWork, call_next: Next, context: Mapping[str, Any]
    ) -> Any:
        trace.append(f"{name}>{uow.id}")
        result = call_next(command, uow)
        trace.append(f"<{name}")
        return result

    return middleware


def make_bus(
    handler: Any, *middleware: Middleware, events: list[Event] | None = None
) -> MessageBus:
    seen = events if events is not None else []
    return MessageBus(
        uow_factory=FakeUnitOfWork,  # type: ignore[arg-type]
        command_handlers={Share: handler},
        event_handlers={Shared: [seen.append]},
        middleware=middleware,
    )


def test_middleware_runs_in_the_order_registered_around_the_handler() -> None:
    trace: list[str] = []

    def share(cmd: Share, uow: FakeUnitOfWork) -> int:
        trace.append(f"handler {cmd.amount}")
        return cmd.amount * 2

    bus = make_bus(share, tracing("outer", trace), tracing("inner", trace))
    assert bus.handle(Share(3)) == 6
    uow = int(trace[0].split(">")[1])
    assert trace == [f"outer>{uow}", f"inner>{uow}", "handler 3", "<inner", "<outer"]


def test_a_plain_command_passes_through_middleware_untouched() -> None:
    """A middleware that finds nothing of its own in the context calls the next one with the
    same command and unit of work, and the caller gets the handler's result as it is."""
    seen: list[tuple[Command, FakeUnitOfWork, Mapping[str, Any]]] = []
    result = object()

    def share(cmd: Share, uow: FakeUnitOfWork) -> object:
        seen.append((cmd, uow, {}))
        return result

    def keyed_only(
        command: Command, uow: FakeUnitOfWork, call_next: Next, context: Mapping[str, Any]
    ) -> Any:
        seen.append((command, uow, context))
        if "key" not in context:
            return call_next(command, uow)
        return ("keyed", context["key"], call_next(command, uow))

    command = Share(1)
    bus = make_bus(share, keyed_only)
    assert bus.handle(command) is result
    [(cmd_in, uow_in, context), (cmd_out, uow_out, _)] = seen
    assert cmd_in is cmd_out is command
    assert uow_in is uow_out
    assert context == {}

    seen.clear()
    assert bus.handle(command, key="k-1") == ("keyed", "k-1", result)
    assert seen[0][2] == {"key": "k-1"}


def test_a_bus_without_middleware_calls_the_handler_directly() -> None:
    def share(cmd: Share, uow: FakeUnitOfWork) -> int:
        return cmd.amount

    assert make_bus(share).handle(Share(7)) == 7


def test_a_conflict_reruns_the_whole_chain_on_a_fresh_unit_of_work() -> None:
    """A race lost anywhere in the chain (here: by the handler on its first two attempts, then
    by the inner middleware) runs every middleware again from the outermost, each time on a
    unit of work of its own; only the last attempt's events are published."""
    trace: list[str] = []
    published: list[Event] = []
    attempts = iter([True, True, False])

    def share(cmd: Share, uow: FakeUnitOfWork) -> int:
        uow.add_event(Shared(uow.id))
        if next(attempts):
            raise ConflictError("deadlock detected")
        return uow.id

    bus = make_bus(share, tracing("outer", trace), tracing("inner", trace), events=published)
    last = bus.handle(Share(1))
    entered = [entry for entry in trace if ">" in entry]
    uows = [int(entry.split(">")[1]) for entry in entered]
    assert [entry.split(">")[0] for entry in entered] == ["outer", "inner"] * 3
    assert uows[0::2] == uows[1::2]  # both middleware see one attempt's unit of work
    assert len(set(uows)) == 3  # a fresh one each attempt
    assert uows[-1] == last
    assert trace[-2:] == ["<inner", "<outer"]
    assert published == [Shared(last)]


def test_a_middleware_that_loses_a_race_is_retried_and_then_gives_up() -> None:
    calls: list[int] = []

    def share(cmd: Share, uow: FakeUnitOfWork) -> int:
        return 0

    def always_taken(
        command: Command, uow: FakeUnitOfWork, call_next: Next, context: Mapping[str, Any]
    ) -> Any:
        calls.append(uow.id)
        raise ConflictError("key taken")

    with pytest.raises(ConflictError, match="key taken"):
        make_bus(share, always_taken).handle(Share(1))
    assert len(set(calls)) == len(calls) == MAX_ATTEMPTS


# -- the idempotency middleware on a fake unit of work -----------------------------------------


def test_the_idempotency_middleware_passes_an_unkeyed_command_through() -> None:
    """Without `idempotency=` in the context it neither opens the unit of work nor takes the
    writers' lock: the handler gets the command and the unit of work as they are."""
    locked: list[object] = []
    seen: list[tuple[Command, object]] = []

    def share(cmd: Share, uow: FakeUnitOfWork) -> int:
        seen.append((cmd, uow))
        return cmd.amount

    command = Share(4)
    bus = make_bus(share, idempotency.IdempotencyMiddleware(locked.append))
    assert bus.handle(command) == 4
    [(cmd, uow)] = seen
    assert cmd is command
    assert isinstance(uow, FakeUnitOfWork)
    assert locked == []


def test_a_keyed_write_is_refused_on_a_bus_without_the_middleware() -> None:
    """A bus that would run the command as if no key had been sent refuses instead."""
    bus = make_bus(lambda cmd, uow: 0)
    request = idempotency.keyed_request("operator:desk", "k", "POST", "/x", {})
    with pytest.raises(RuntimeError, match="no idempotency middleware"):
        idempotency.run(bus, request, Share(1), lambda _, uow: (200, "{}"), retention_seconds=1)


def test_the_joined_unit_of_work_offers_every_repository_of_the_one_it_wraps() -> None:
    """Repositories are found on the wrapped unit of work by name, so one a new capability
    registers needs no change to the joined view; its own state stays its own."""

    class Wrapped(FakeUnitOfWork):
        log = object()
        clock = object()
        brand_new_capability = object()
        _private = object()

    wrapped = Wrapped()
    joined = idempotency.JoinedUnitOfWork(wrapped, writable=True)  # type: ignore[arg-type]
    assert joined.brand_new_capability is wrapped.brand_new_capability
    assert (joined.log, joined.clock) == (wrapped.log, wrapped.clock)
    with pytest.raises(AttributeError):
        _ = joined._private
    with joined:
        joined.add_event(Shared(1))
        joined.commit()
    assert joined.committed
    assert list(wrapped.collect_new_events()) == [Shared(1)]
