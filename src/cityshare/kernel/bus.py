"""The message bus: hands each command to its handler, then each raised event to its handlers.

Capabilities register their handlers in `bootstrap.py`; entrypoints only build commands and call
`bus.handle(cmd)`. A handler that lost a race with another transaction (a PostgreSQL deadlock or
serialisation failure) is run again from the start, which is safe because it wrote nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from cityshare.kernel.errors import ConflictError
from cityshare.kernel.messages import Command, Event
from cityshare.kernel.uow import UnitOfWorkFactory

log = logging.getLogger(__name__)

CommandHandler = Callable[[Any, Any], Any]
EventHandler = Callable[[Any], None]

MAX_ATTEMPTS = 5


class MessageBus:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        command_handlers: dict[type[Command], CommandHandler],
        event_handlers: dict[type[Event], list[EventHandler]] | None = None,
    ) -> None:
        self.uow_factory = uow_factory
        self.command_handlers = command_handlers
        self.event_handlers = event_handlers or {}

    def handle(self, command: Command) -> Any:
        handler = self.command_handlers[type(command)]
        for attempt in range(1, MAX_ATTEMPTS + 1):
            uow = self.uow_factory()
            try:
                result = handler(command, uow)
            except ConflictError:
                if attempt == MAX_ATTEMPTS:
                    raise
                log.info("%s conflicted with another transaction; retrying", type(command).__name__)
                continue
            self._publish(list(uow.collect_new_events()))
            return result
        raise AssertionError("unreachable")

    def _publish(self, queue: list[Event]) -> None:
        while queue:
            event = queue.pop(0)
            for handler in self.event_handlers.get(type(event), []):
                try:
                    handler(event)
                except Exception:  # an event handler must not undo a committed command
                    log.exception("event handler %r failed on %r", handler, event)
