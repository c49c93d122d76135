"""Driver-level SQL shared by the bulk repositories (SQLite and PostgreSQL, one code path).

Hot paths move thousands of rows per transaction, so they use the DB-API cursor directly;
these helpers hide the two drivers' differences (placeholders, "id in a list" predicates).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable
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

    def _fetch_by_ids(self, sql: str, ids: Collection[int]) -> list[Any]:
        """Rows of `sql`, whose one parameter is the list `ids` (see `_in_ids`)."""
        if not ids:
            return []
        cur = self._cursor()
        try:
            cur.execute(sql, (self._ids_param(ids),))
            return list(cur.fetchall())
        finally:
            cur.close()

    def _single_value(self, sql: str, missing: str) -> int:
        """The one integer a one-row table holds (a clock, a head); `missing` if it is gone."""
        cur = self._cursor()
        try:
            cur.execute(sql)
            row = cur.fetchone()
        finally:
            cur.close()
        if row is None:
            raise RuntimeError(f"{missing}: run `cityshare db upgrade`")
        return int(row[0])
