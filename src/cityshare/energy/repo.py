"""Energy storage: device keys for verification, readings, credited intervals, tariffs.

Ingestion is a hot path (thousands of readings per transaction), so the batch reads are one
set-based query each, keyed by one JSON array (SQLite `json_each`, PostgreSQL
`json_array_elements`: json.dumps and the server's JSON parser are C, where psycopg dumps a
Python list into a PostgreSQL array element by element in Python), and the inserts use the
driver cursor (executemany on SQLite, binary COPY on PostgreSQL).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import delete, func, insert, select

from cityshare.energy.chain import ChainState, Reading
from cityshare.energy.model import (
    DeviceKey,
    DeviceKeys,
    IntervalRow,
    IntervalSums,
    ReadingRow,
    TariffRow,
)
from cityshare.energy.tables import meter_intervals, meter_readings, meter_waiting, tariffs
from cityshare.kernel.driver import DriverRepository

READING_COLUMNS = "id, device_id, seq, ts, import_wh, export_wh, received_at, source, jws"
INTERVAL_COLUMNS = (
    "id, device_id, seq, prev_seq, status, start_ts, end_ts, tod, import_wh, export_wh, "
    "carbon_g, credit_milli, owner_id, tariff_id, base_seq, base_ts, base_import, base_export, "
    "top_seq, top_ts, hw_ts, hw_import, hw_export, carbon_carry, credit_carry, at"
)
_STATE_COLUMNS = (
    "device_id, base_seq, base_ts, base_import, base_export, top_seq, top_ts, hw_ts, "
    "hw_import, hw_export, carbon_carry, credit_carry, tariff_id"
)

#: Per device with a chain, when its oldest reading above or below the chain (by the state of
#: its latest interval) was received: what `meter_waiting` holds (migration 0010 fills it so).
WAITING_SINCE = (
    "SELECT r.device_id AS device_id, MIN(r.received_at) AS since FROM meter_readings r "
    "JOIN meter_intervals i ON i.id = "
    "(SELECT MAX(l.id) FROM meter_intervals l WHERE l.device_id = r.device_id) "
    "WHERE r.seq > i.top_seq OR r.seq < i.base_seq GROUP BY r.device_id"
)

#: PostgreSQL types of the columns above, for binary COPY (varchar takes text's wire format).
_READING_TYPES = ["int8", "text", *["int8"] * 5, "text", "text"]
_INTERVAL_TYPES = [
    "int8", "text", "int8", "int8", "text", "int8", "int8", "text", *["int8"] * 18,
]  # fmt: skip


class EnergyRepository(DriverRepository):
    """Reads and writes energy rows on one open connection inside one transaction."""

    # -- helpers for text keys ------------------------------------------------------------

    def _rows(self, sql: str, params: Sequence[Any]) -> list[Any]:
        cur = self._cursor()
        try:
            cur.execute(sql, params)
            return list(cur.fetchall())
        finally:
            cur.close()

    # -- verification ---------------------------------------------------------------------

    def device_keys(self, device_ids: Collection[str]) -> dict[str, DeviceKeys]:
        """Every named device with all its keys (live or revoked, by id), in one query."""
        if not device_ids:
            return {}
        columns = "d.id, d.owner_id, d.kind, d.registered_at, k.id, k.public_key, r.id IS NULL"
        joins = (
            "JOIN devices d ON d.id = v.d "
            "LEFT JOIN device_keys k ON k.device_id = d.id "
            "LEFT JOIN device_key_revocations r ON r.id = k.id"
        )
        if self.sqlite:
            rows = self._rows(
                f"SELECT {columns} FROM (SELECT value AS d FROM json_each(?)) v {joins}",
                (json.dumps(list(device_ids)),),
            )
        else:
            rows = self._rows(
                f"SELECT {columns} FROM json_array_elements_text(%s::json) AS v(d) {joins}",
                (json.dumps(list(device_ids)),),
            )
        found: dict[str, DeviceKeys] = {}
        several: set[str] = set()
        for device_id, owner_id, kind, registered_at, key_id, public_key, live in rows:
            keys = () if key_id is None else (DeviceKey(key_id, bytes(public_key), bool(live)),)
            prior = found.get(device_id)
            if prior is None:
                found[device_id] = DeviceKeys(device_id, owner_id, kind, registered_at, keys)
            else:  # a device with several keys (rare): one row per key
                found[device_id] = DeviceKeys(
                    device_id, owner_id, kind, registered_at, prior.keys + keys
                )
                several.add(device_id)
        for device_id in several:
            d = found[device_id]
            found[device_id] = DeviceKeys(
                device_id,
                d.owner_id,
                d.kind,
                d.registered_at,
                tuple(sorted(d.keys, key=lambda k: k.id)),
            )
        return found

    def revoked_among(self, key_ids: Collection[int]) -> set[int]:
        rows = self._fetch_by_ids(
            f"SELECT id FROM device_key_revocations WHERE {self._in_ids('id')}", key_ids
        )
        return {row[0] for row in rows}

    # -- a batch's reads ------------------------------------------------------------------

    def _readings_at(self, columns: str, keys: Collection[tuple[str, int]]) -> list[Any]:
        """`columns` of the stored readings among (device, seq) pairs, in one query."""
        if not keys:
            return []
        data = (json.dumps([list(k) for k in keys]),)
        if self.sqlite:
            return self._rows(
                f"SELECT {columns} FROM json_each(?) j JOIN meter_readings r "
                "ON r.device_id = json_extract(j.value, '$[0]') "
                "AND r.seq = json_extract(j.value, '$[1]')",
                data,
            )
        return self._rows(
            f"SELECT {columns} FROM json_array_elements(%s::json) AS v(e) "
            "JOIN meter_readings r ON r.device_id = v.e->>0 AND r.seq = (v.e->>1)::bigint",
            data,
        )

    def existing_readings(
        self, keys: Collection[tuple[str, int]]
    ) -> dict[tuple[str, int], Reading]:
        """Stored readings among (device, seq) pairs, for deduplication."""
        rows = self._readings_at(
            "r.device_id, r.seq, r.ts, r.import_wh, r.export_wh, r.received_at", keys
        )
        return {(r[0], r[1]): Reading(r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def stored_tokens(self, keys: Collection[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The JWS stored for each of these (device, seq) pairs that has one."""
        return {(r[0], r[1]): r[2] for r in self._readings_at("r.device_id, r.seq, r.jws", keys)}

    def chain_states(self, device_ids: Collection[str]) -> dict[str, ChainState]:
        """Each device's chain state: the one recorded with its latest interval."""
        if not device_ids:
            return {}
        if self.sqlite:
            latest = (
                "SELECT (SELECT max(m.id) FROM meter_intervals m WHERE m.device_id = j.value) "
                "FROM json_each(?) j"
            )
            param: Any = json.dumps(list(device_ids))
        else:
            latest = (
                "SELECT (SELECT max(m.id) FROM meter_intervals m WHERE m.device_id = v.d) "
                "FROM json_array_elements_text(%s::json) AS v(d)"
            )
            param = json.dumps(list(device_ids))
        rows = self._rows(
            f"SELECT {_STATE_COLUMNS} FROM meter_intervals WHERE id IN ({latest})", (param,)
        )
        states = {row[0]: ChainState(*row[1:]) for row in rows}
        for device_id, top, base in self._fallbacks(param):
            states[device_id] = replace(states[device_id], fb_top=top, fb_base=base)
        return states

    def _fallbacks(self, param: str) -> list[tuple[str, Any, Any]]:
        """Each chain's fallbacks (`ChainState.fb_top`, `fb_base`), from its intervals: on
        either side, the registers before the first impossible jump joined there since the
        side last moved otherwise (an `ok`, a reset or the baseline). Only chains with one."""
        devices = (
            "SELECT j.value AS d FROM json_each(?) j"
            if self.sqlite
            else "SELECT v.d FROM json_array_elements_text(%s::json) AS v(d)"
        )
        out: dict[str, list[Any]] = {}
        for side, (up, cols) in enumerate(
            (("m.seq > m.prev_seq", "hw_ts, hw_import, hw_export"),
             ("m.seq < m.prev_seq", "base_ts, base_import, base_export"))
        ):  # fmt: skip
            moved = (
                "SELECT m.id FROM meter_intervals m WHERE m.device_id = x.d AND "
                f"(m.status = 'baseline' OR ({up} AND m.status IN ('ok', 'meter_reset'))) "
                "ORDER BY m.id DESC LIMIT 1"
            )
            jump = (
                "SELECT m.id FROM meter_intervals m WHERE m.device_id = x.d AND "
                f"{up} AND m.status = 'impossible_power' AND m.id > ({moved}) "
                "ORDER BY m.id LIMIT 1"
            )
            before = (
                "SELECT b.id FROM meter_intervals b WHERE b.device_id = y.d AND b.id < y.jump "
                "ORDER BY b.id DESC LIMIT 1"
            )
            sql = (
                f"SELECT y.d, {', '.join('i.' + c.strip() for c in cols.split(','))} FROM "
                f"(SELECT x.d AS d, ({jump}) AS jump FROM ({devices}) x) y "
                f"JOIN meter_intervals i ON i.id = ({before}) WHERE y.jump IS NOT NULL"
            )
            for row in self._rows(sql, (param,)):
                out.setdefault(row[0], [None, None])[side] = (row[1], row[2], row[3])
        return [(d, top, base) for d, (top, base) in out.items()]

    def waiting_readings(self, bounds: Sequence[tuple[str, int, int]]) -> dict[str, list[Reading]]:
        """Stored readings outside each device's chain: (device, base_seq, top_seq) -> those
        with seq > top_seq or seq < base_seq (pass -1, -1 for a device with no chain)."""
        if not bounds:
            return {}
        columns = "r.device_id, r.seq, r.ts, r.import_wh, r.export_wh, r.received_at"
        if self.sqlite:
            part = (
                f"SELECT {columns} FROM json_each(?) j JOIN meter_readings r "
                "ON r.device_id = json_extract(j.value, '$[0]') AND r.seq {op} "
                "json_extract(j.value, '$[{i}]')"
            )
            data = json.dumps([list(b) for b in bounds])
            params: tuple[Any, ...] = (data, data)
        else:
            part = (
                f"SELECT {columns} FROM json_array_elements(%s::json) AS v(e) "
                "JOIN meter_readings r ON r.device_id = v.e->>0 AND r.seq {op} "
                "(v.e->>{i})::bigint"
            )
            data = json.dumps([list(b) for b in bounds])
            params = (data, data)
        sql = part.format(op=">", i=2) + " UNION ALL " + part.format(op="<", i=1)
        out: dict[str, list[Reading]] = {}
        for row in self._rows(sql, params):
            out.setdefault(row[0], []).append(Reading(*row[1:]))
        return out

    def next_ids(self) -> tuple[int, int]:
        """The next reading id and interval id (callers hold the ledger's write lock)."""
        reading = self.conn.execute(select(func.max(meter_readings.c.id))).scalar()
        interval = self.conn.execute(select(func.max(meter_intervals.c.id))).scalar()
        return int(reading or 0) + 1, int(interval or 0) + 1

    # -- tariffs --------------------------------------------------------------------------

    def tariff_by_digest(self, digest: str) -> TariffRow | None:
        row = self.conn.execute(select(tariffs).where(tariffs.c.digest == digest)).first()
        return None if row is None else TariffRow(*row)

    def tariff(self, tariff_id: int) -> TariffRow | None:
        row = self.conn.execute(select(tariffs).where(tariffs.c.id == tariff_id)).first()
        return None if row is None else TariffRow(*row)

    def insert_tariff(self, row: TariffRow) -> None:
        self.conn.execute(
            tariffs.insert().values(
                id=row.id, digest=row.digest, name=row.name, body=row.body, added_at=row.added_at
            )
        )

    def next_tariff_id(self) -> int:
        return int(self.conn.execute(select(func.max(tariffs.c.id))).scalar() or 0) + 1

    # -- bulk writes ----------------------------------------------------------------------

    def insert_readings(self, rows: Sequence[ReadingRow]) -> None:
        self._bulk_insert("meter_readings", READING_COLUMNS, rows, _READING_TYPES)

    def insert_intervals(self, rows: Sequence[IntervalRow]) -> None:
        self._bulk_insert("meter_intervals", INTERVAL_COLUMNS, rows, _INTERVAL_TYPES)

    # -- devices whose readings wait beside their chain ------------------------------------

    def overdue_waiting(self, received_before: int, limit: int) -> list[DeviceKeys]:
        """Chains with a reading waiting since at or before `received_before`, oldest first,
        each as the party its readings credit (no keys: the readings are stored already)."""
        w = meter_waiting.c
        rows = self.conn.execute(
            select(w.device_id, w.owner_id, w.kind, w.registered_at)
            .where(w.since <= received_before)
            .order_by(w.since)
            .limit(limit)
        )
        return [DeviceKeys(d, owner, kind, registered, ()) for d, owner, kind, registered in rows]

    def set_waiting(
        self, since: Mapping[str, tuple[int, DeviceKeys]], cleared: Collection[str]
    ) -> None:
        """Mark chains as waiting since the given instant (with the party they credit), and
        unmark `cleared` ones."""
        w = meter_waiting.c
        changed = [*since, *cleared]
        if changed:
            self.conn.execute(delete(meter_waiting).where(w.device_id.in_(changed)))
        if since:
            self.conn.execute(
                insert(meter_waiting),
                [
                    {"device_id": d, "since": t, "owner_id": p.owner_id, "kind": p.kind,
                     "registered_at": p.registered_at}
                    for d, (t, p) in since.items()
                ],
            )  # fmt: skip

    def waiting_mismatches(self, limit: int) -> list[tuple[str, int | None, int | None]]:
        """(chain, since derived from the readings, since marked) wherever `meter_waiting` is
        not what the readings and chains say, for `audit verify`."""
        rows = self._rows(
            f"WITH expected AS ({WAITING_SINCE}) "
            "SELECT e.device_id, e.since, w.since FROM expected e "
            "LEFT JOIN meter_waiting w ON w.device_id = e.device_id "
            "WHERE w.since IS NULL OR w.since <> e.since "
            "UNION ALL SELECT w.device_id, NULL, w.since FROM meter_waiting w "
            "WHERE NOT EXISTS (SELECT 1 FROM expected e WHERE e.device_id = w.device_id) "
            f"ORDER BY 1 LIMIT {int(limit)}",
            (),
        )
        return [(row[0], row[1], row[2]) for row in rows]

    def uncredited_intervals(self, base: int, limit: int) -> list[tuple[int, str]]:
        """(interval id, device id) of each `ok` interval whose postings are not exactly its
        credits: transfer `base + 4 * id + kind` (points, carbon, export, import, codes 4001 to
        4004) with the interval's amount and the interval as user_data where the amount is
        positive, none where it is 0; for `audit verify`."""
        kinds = ("credit_milli", "carbon_g", "export_wh", "import_wh")
        joins = " ".join(
            f"LEFT JOIN transfers t{k} ON t{k}.id = {int(base)} + i.id * 4 + {k}"
            for k in range(4)
        )
        exact = " AND ".join(
            f"((i.{amount} = 0 AND t{k}.id IS NULL) OR (i.{amount} > 0 AND t{k}.id IS NOT NULL "
            f"AND t{k}.amount = i.{amount} AND t{k}.code = {4001 + k} "
            f"AND t{k}.user_data = i.id))"
            for k, amount in enumerate(kinds)
        )
        rows = self._rows(
            f"SELECT i.id, i.device_id FROM meter_intervals i {joins} "
            f"WHERE i.status = 'ok' AND NOT ({exact}) ORDER BY i.id LIMIT {int(limit)}",
            (),
        )
        return [(int(row[0]), str(row[1])) for row in rows]

    def waiting_parties(self) -> list[tuple[DeviceKeys, tuple[Any, ...]]]:
        """Each mark's party, beside what it is derived from: (the owner of the chain's latest
        interval, the device's kind and registration time, the OCPP session's start), for
        `audit verify`."""
        rows = self._rows(
            "SELECT w.device_id, w.owner_id, w.kind, w.registered_at, "
            "i.owner_id, d.kind, d.registered_at, s.started_ts FROM meter_waiting w "
            "LEFT JOIN meter_intervals i ON i.id = "
            "(SELECT MAX(l.id) FROM meter_intervals l WHERE l.device_id = w.device_id) "
            "LEFT JOIN devices d ON d.id = w.device_id "
            "LEFT JOIN charging_sessions s ON s.chain_id = w.device_id "
            "ORDER BY w.device_id",
            (),
        )
        return [(DeviceKeys(r[0], r[1], r[2], r[3], ()), tuple(r[4:])) for r in rows]

    # -- read side ------------------------------------------------------------------------

    def latest_readings(self, device_ids: Iterable[str]) -> dict[str, tuple[int, int, int, int]]:
        """Each device's reading with the highest seq: (seq, ts, import_wh, export_wh)."""
        r = meter_readings.c
        out = {}
        for device_id in device_ids:
            row = self.conn.execute(
                select(r.seq, r.ts, r.import_wh, r.export_wh)
                .where(r.device_id == device_id)
                .order_by(r.seq.desc())
                .limit(1)
            ).first()
            if row is not None:
                out[device_id] = (row[0], row[1], row[2], row[3])
        return out

    def owner_totals(self, owner_id: int) -> IntervalSums:
        i = meter_intervals.c
        row = self.conn.execute(
            select(
                func.coalesce(func.sum(i.import_wh), 0),
                func.coalesce(func.sum(i.export_wh), 0),
                func.coalesce(func.sum(i.carbon_g), 0),
                func.coalesce(func.sum(i.credit_milli), 0),
            ).where(i.owner_id == owner_id)
        ).one()
        return IntervalSums(int(row[0]), int(row[1]), int(row[2]), int(row[3]))

    def owner_intervals(self, owner_id: int, since_ts: int) -> list[tuple[int, int, int, int, int]]:
        """(start_ts, import_wh, export_wh, carbon_g, credit_milli) of the owner's credited
        intervals that start at or after `since_ts`."""
        i = meter_intervals.c
        rows = self.conn.execute(
            select(i.start_ts, i.import_wh, i.export_wh, i.carbon_g, i.credit_milli).where(
                i.owner_id == owner_id, i.start_ts >= since_ts, i.status == "ok"
            )
        ).all()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    def awaiting_review(
        self, owner_id: int | None, after_id: int, limit: int
    ) -> list[tuple[int, str, int, int, int, str, int, int]]:
        """Anomalous intervals no later `ok` interval covers (see `energy.chain`), by id:
        (id, device, owner, seq, prev_seq, status, start_ts, end_ts). An anomalous interval
        joined at the top is covered when the next interval that moved the top is `ok` and
        measured from at or before its start; at the bottom, mirrored."""
        ph = "?" if self.sqlite else "%s"
        nxt = (
            "(SELECT CASE WHEN m.status = 'ok' AND {cond} THEN 1 ELSE 0 END "
            "FROM meter_intervals m WHERE m.device_id = x.device_id AND m.id > x.id AND "
            "{side} AND m.status IN ('ok', 'meter_reset') ORDER BY m.id LIMIT 1)"
        )
        top = nxt.format(cond="m.start_ts <= x.start_ts", side="m.seq > m.prev_seq")
        bottom = nxt.format(cond="m.end_ts >= x.end_ts", side="m.seq < m.prev_seq")
        owner = f"AND x.owner_id = {ph} " if owner_id is not None else ""
        sql = (
            "SELECT x.id, x.device_id, x.owner_id, x.seq, x.prev_seq, x.status, x.start_ts, "
            "x.end_ts FROM meter_intervals x WHERE x.status NOT IN ('ok', 'baseline') "
            f"AND x.id > {ph} {owner}AND COALESCE(CASE WHEN x.seq > x.prev_seq THEN {top} "
            f"ELSE {bottom} END, 0) = 0 ORDER BY x.id LIMIT {ph}"
        )
        params: tuple[int, ...] = (
            (after_id, owner_id, limit) if owner_id is not None else (after_id, limit)
        )
        return [tuple(r) for r in self._rows(sql, params)]
