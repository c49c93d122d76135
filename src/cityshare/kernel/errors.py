"""The store's failures as the service states them, so that doors never import the driver.

The unit of work (`kernel/uow.py`) turns SQLAlchemy's driver errors into these: the HTTP app,
the MQTT and OCPP doors and the CLI catch them and never name an SQLAlchemy exception. An
integrity error (a unique key taken, a constraint broken) is not translated: it is a bug or a
race the handler itself resolves, not the store being away.
"""

from __future__ import annotations


class ConflictError(Exception):
    """Another transaction got in the way (deadlock, serialisation failure): run it again."""


class StoreUnavailable(Exception):  # noqa: N818 (a state, named as the service states it)
    """The store cannot serve now: its server is down or unreachable, the connection was lost,
    the pool had no connection to give, SQLite stayed locked past its busy timeout (or the
    database is not a cityshare one at the current revision). Nothing was committed, so the
    same work may be retried once the store is back."""
