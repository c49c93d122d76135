"""Driver-level SQL shared by the bulk repositories (SQLite and PostgreSQL, one code path).

Hot paths move thousands of rows per transaction, so they use the DB-API cursor directly;
these helpers hide the two drivers' differences (placeholders, "id in a list" predicates).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection


class DriverRepository:
    """Base of repositories that work on one open connection inside one transaction."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.sqlite = conn.dialect.name == "sqlite"

    def _cursor(self) -> Any:
        return self.conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

    def _sql(self, sql: str) -> str:
        """Write SQL with `?` placeholders; PostgreSQL's psycopg wants `%s`."""
        return sql if self.sqlite else sql.replace("?", "%s")

    def _in_ids(self, column: str) -> str:
        """A predicate `column IN <one parameter holding a list of ids>` for this dialect."""
        if self.sqlite:
            return f"{column} IN (SELECT value FROM json_each(?))"
        return f"{column} = ANY(%s::bigint[])"

    def _ids_param(self, ids: Iterable[int]) -> Any:
        return json.dumps(list(ids)) if self.sqlite else list(ids)
