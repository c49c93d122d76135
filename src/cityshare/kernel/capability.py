"""A capability declares itself once, in its package's `capability.py`, as a `Capability`.

The platform is the list `cityshare.capabilities.CAPABILITIES`; everything that used to be a
hub loops over it:

- bootstrap gives the bus each capability's command and event `handlers`;
- the unit of work opens each capability's `repositories` on its connection (`uow.<name>`);
- the app includes its `routers` and publishes the API document its `openapi` amends; the CLI
  adds its `cli` groups;
- `audit verify` re-encodes the rows of its `records` and runs its derived `checks`;
- the scheduler (`serve` or `cityshare worker`) runs its periodic `jobs`.

Routers and CLI groups are given as functions that import them, so that loading the list does not
load FastAPI or Typer for a program that uses neither, and so that a capability's entrypoints may
import `cityshare.bootstrap` without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from cityshare.kernel.messages import Command, Event
from cityshare.kernel.seal import Sealer

if TYPE_CHECKING:
    import typer
    from fastapi import APIRouter


#: `handler(command, uow)`, its other arguments bound at bootstrap.
CommandHandler = Callable[[Any, Any], Any]
EventHandler = Callable[[Any], None]
#: Opens one repository on a unit of work's connection (`sealer`: the platform's row seals).
RepositoryFactory = Callable[[Connection, Sealer | None], object]
#: Re-encodes a stored row (column name -> value) as the exact bytes of its log entry.
RecordEncoder = Callable[[Mapping[str, Any]], bytes]
#: A check of state derived from logged records, run in the audit's read transaction: yields
#: (table, key, message) for every derived row that is not what the records say.
DerivedCheck = Callable[[Any], Iterable[tuple[str, int | str | None, str]]]


@dataclass(frozen=True, slots=True)
class LoggedRecord:
    """One JSON record type of the audit log: its `type`, the `table` whose rows it logs
    (one type per table) keyed by `key`, and how a stored row is encoded again."""

    type: str
    table: str
    encode: RecordEncoder
    key: str = "id"


@dataclass(frozen=True, slots=True)
class Job:
    """Work the scheduler hands to the bus every `every(settings)` seconds (0 or less: never)."""

    name: str
    every: Callable[[Any], float]
    command: Callable[[], Command]


def _nothing(_: Any) -> Mapping[Any, Any]:
    return {}


def _none() -> Sequence[Any]:
    return ()


def _as_is(_: Any, __: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True, slots=True)
class Capability:
    name: str
    #: Attribute of the unit of work -> how it is opened on the connection.
    repositories: Mapping[str, RepositoryFactory] = field(default_factory=dict)
    #: Command type -> handler, given the platform being wired (settings, keys, tariff).
    handlers: Callable[[Any], Mapping[type[Command], CommandHandler]] = _nothing
    #: Event type -> handlers, given the platform being wired.
    event_handlers: Callable[[Any], Mapping[type[Event], Sequence[EventHandler]]] = _nothing
    #: The JSON record types this capability logs, checked both ways by `audit verify`.
    records: Sequence[LoggedRecord] = ()
    #: Checks of state it derives from its records (`audit verify` runs each).
    checks: Sequence[DerivedCheck] = ()
    #: Its HTTP routers (imported when called).
    routers: Callable[[], Sequence[APIRouter]] = _none
    #: Its CLI groups, (name, Typer app) (imported when called).
    cli: Callable[[], Sequence[tuple[str, typer.Typer]]] = _none
    #: Its periodic work.
    jobs: Sequence[Job] = ()
    #: Amends the published OpenAPI document (in place), given the platform: what only the
    #: running platform knows (e.g. the windows of the configured tariff).
    openapi: Callable[[Any, dict[str, Any]], None] = _as_is
    #: The lock every writer takes first in its transaction, given the unit of work, if this
    #: capability keeps it (the ledger's write lock serialises every writer); a keyed write
    #: takes it before it looks its key up (kernel/idempotency.py).
    writer_lock: Callable[[Any], object] | None = None
