"""Commands and events: what someone asks the platform to do (imperative), and facts that
happened (past tense). Each capability defines its own in its `commands.py` and `events.py`."""

from __future__ import annotations


class Command:
    """Base class of every command."""


class Event:
    """Base class of every domain event."""
