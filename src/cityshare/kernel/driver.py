"""Driver-level SQL shared by the bulk repositories (SQLite and PostgreSQL, one code path).

Hot paths move thousands of rows per transaction, so they use the DB-API cursor directly;
these helpers hide the two drivers' differences (placeholders, "id in a list" predicates).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
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

    def _bulk_insert(
        self,
        table: str,
        columns: str,
        rows: Sequence[Sequence[Any]],
        types: Sequence[str] | None = None,
    ) -> None:
        """Insert `rows` (tuples in the order of `columns`, "a, b, c") in one round trip:
        executemany on SQLite; COPY on PostgreSQL, binary when the columns' PostgreSQL `types`
        are given (psycopg then packs each value without looking its type up; text COPY turns
        every value into a string first)."""
        if not rows:
            return
        cur = self._cursor()
        try:
            if self.sqlite:
                marks = ", ".join("?" * len(rows[0]))
                cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
            elif types is None:
                with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                copy_binary(cur, f"{table} ({columns})", types, rows)
        finally:
            cur.close()

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


def copy_binary(cur: Any, target: str, types: Sequence[str], rows: Iterable[Any]) -> None:
    """Binary COPY of `rows` into `target` ("table (a, b)") on a psycopg cursor, row by row:
    psycopg sends rows while Python makes the next ones."""
    with cur.copy(f"COPY {target} FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)
