"""Commands and events: what someone asks the platform to do (imperative), and facts that
happened (past tense). Each capability defines its commands in its `commands.py`, and an
event in an `events.py` once some handler consumes it (a capability registers those in its
`event_handlers`): an event nothing handles is not raised."""

from __future__ import annotations


class Command:
    """Base class of every command."""


class Event:
    """Base class of every domain event."""
