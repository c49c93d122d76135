"""The message bus: hands each command to its handler, then each raised event to its handlers.

Capabilities register their handlers in `bootstrap.py`; entrypoints only build commands and call
`bus.handle(cmd)`. A handler that lost a race with another transaction (a PostgreSQL deadlock or
serialisation failure) is run again from the start, which is safe because it wrote nothing.

**Middleware.** Work that wraps a command's handler whatever the command (e.g. answering a
write at most once per Idempotency-Key, kernel/idempotency.py) is middleware, registered in
bootstrap: `middleware(command, uow, call_next, context)` runs around `call_next(command, uow)`,
the rest of the chain ending in the handler, and returns what the caller gets. `context` is
what the caller passed as `bus.handle(command, **context)` (empty for a plain call), so a
middleware that finds nothing of its own in it passes the command through untouched. The
chain runs inside the bus's one retry loop (each attempt runs the whole chain again on a fresh
unit of work, so a middleware that lost a race raises `ConflictError` and is run again) and
its one event publishing (the events raised on the attempt's unit of work, after it returns).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cityshare.kernel.errors import ConflictError
from cityshare.kernel.messages import Command, Event
from cityshare.kernel.uow import UnitOfWorkFactory

log = logging.getLogger(__name__)

CommandHandler = Callable[[Any, Any], Any]
EventHandler = Callable[[Any], None]
#: `call_next(command, uow)`: the rest of the chain, ending in the command's handler.
Next = Callable[[Any, Any], Any]
#: `middleware(command, uow, call_next, context)`: runs around `call_next`, in chain order.
Middleware = Callable[[Any, Any, Next, Mapping[str, Any]], Any]

MAX_ATTEMPTS = 5


class MessageBus:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        command_handlers: dict[type[Command], CommandHandler],
        event_handlers: dict[type[Event], list[EventHandler]] | None = None,
        middleware: Sequence[Middleware] = (),
    ) -> None:
        self.uow_factory = uow_factory
        self.command_handlers = command_handlers
        self.event_handlers = event_handlers or {}
        #: Outermost first: the first one registered sees the command first.
        self.middleware: list[Middleware] = list(middleware)

    def handle(self, command: Command, **context: Any) -> Any:
        """Run `command`'s handler through the middleware (given `context`), retrying on a
        lost race, then publish the events raised; what the chain returned."""
        handler = self.command_handlers[type(command)]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            uow = self.uow_factory()
            try:
                result = self._chain(handler, 0, context)(command, uow)
            except ConflictError:
                if attempt == MAX_ATTEMPTS:
                    raise
                log.info("%s conflicted with another transaction; retrying", type(command).__name__)
                continue
            self._publish(list(uow.collect_new_events()))
            return result
        raise AssertionError("unreachable")

    def _chain(self, handler: CommandHandler, index: int, context: Mapping[str, Any]) -> Next:
        """The chain from middleware `index` on, ending in `handler`."""
        if index == len(self.middleware):
            return handler
        middleware = self.middleware[index]
        call_next = self._chain(handler, index + 1, context)
        return lambda command, uow: middleware(command, uow, call_next, context)

    def _publish(self, queue: list[Event]) -> None:
        while queue:
            event = queue.pop(0)
            for handler in self.event_handlers.get(type(event), []):
                try:
                    handler(event)
                except Exception:  # an event handler must not undo a committed command
                    log.exception("event handler %r failed on %r", handler, event)
