"""Charging storage: charger passwords, vehicles' id tokens, charging sessions and their stops.

Not a hot path (a few rows per OCPP transaction), so it reads like the schema. Rows are
immutable facts; the live state (a charger's password, a vehicle's tokens) is the latest fact.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from sqlalchemy import Column, Connection, func, select

from cityshare.charging.model import (
    ChainTotals,
    ChargerSecretRow,
    IdTokenRow,
    Planned,
    SessionRow,
    StopRow,
)
from cityshare.charging.tables import (
    charger_secrets,
    charging_chain_seqs,
    charging_session_stops,
    charging_sessions,
    vehicle_id_token_removals,
    vehicle_id_tokens,
)
from cityshare.energy.tables import meter_intervals
from cityshare.kernel import seals
from cityshare.kernel.seal import Sealer


class ChargingRepository:
    def __init__(self, conn: Connection, sealer: Sealer | None = None) -> None:
        self.conn = conn
        #: Seals charger passwords' rows (kernel/seals.py); needed only to read or write them.
        self.sealer = sealer

    def _next_id(self, column: Column[Any]) -> int:
        """The next id; callers hold the ledger's write lock."""
        current = self.conn.execute(select(func.max(column))).scalar()
        return int(current or 0) + 1

    # -- charger passwords ----------------------------------------------------------------

    def next_secret_id(self) -> int:
        return self._next_id(charger_secrets.c.id)

    def insert_secret(self, row: ChargerSecretRow) -> None:
        values = {f: getattr(row, f) for f in ChargerSecretRow.__dataclass_fields__}
        self.conn.execute(
            charger_secrets.insert().values(seals.sealed(self.sealer, charger_secrets, values))
        )

    def current_secret(self, device_id: str) -> ChargerSecretRow | None:
        """The charger's newest password row; None if it has none, or if that row's seal
        fails (logged): a changed hash must neither admit whoever knows another password nor
        bring back an older one, so the charger is locked out until a new password is set."""
        c = charger_secrets.c
        row = self.conn.execute(
            select(charger_secrets).where(c.device_id == device_id).order_by(c.id.desc()).limit(1)
        ).first()
        if row is None or not seals.intact(self.sealer, charger_secrets, row._mapping, row.id):
            return None
        return ChargerSecretRow(row.id, row.device_id, row.secret_hash, row.set_at)

    # -- id tokens --------------------------------------------------------------------------

    def next_token_id(self) -> int:
        return self._next_id(vehicle_id_tokens.c.id)

    def _tokens(self, *where: object) -> list[IdTokenRow]:
        t, r = vehicle_id_tokens.c, vehicle_id_token_removals.c
        rows = self.conn.execute(
            select(t.id, t.device_id, t.token_hash, t.added_at, r.removed_at)
            .select_from(vehicle_id_tokens.outerjoin(vehicle_id_token_removals, r.id == t.id))
            .where(*where)  # type: ignore[arg-type]
            .order_by(t.id)
        ).all()
        return [IdTokenRow(*row) for row in rows]

    def live_token(self, token_hash: str) -> IdTokenRow | None:
        """The live registration of a token (at most one: registration refuses a second)."""
        found = [
            row for row in self._tokens(vehicle_id_tokens.c.token_hash == token_hash) if row.live
        ]
        return found[-1] if found else None

    def tokens_of(self, device_id: str) -> list[IdTokenRow]:
        return self._tokens(vehicle_id_tokens.c.device_id == device_id)

    def token(self, token_id: int) -> IdTokenRow | None:
        found = self._tokens(vehicle_id_tokens.c.id == token_id)
        return found[0] if found else None

    def insert_token(self, row: IdTokenRow) -> None:
        self.conn.execute(
            vehicle_id_tokens.insert().values(
                id=row.id,
                device_id=row.device_id,
                token_hash=row.token_hash,
                added_at=row.added_at,
            )
        )

    def remove_token(self, token_id: int, at: int) -> None:
        self.conn.execute(vehicle_id_token_removals.insert().values(id=token_id, removed_at=at))

    # -- sessions -----------------------------------------------------------------------------

    def next_session_id(self) -> int:
        return self._next_id(charging_sessions.c.id)

    def insert_session(self, row: SessionRow) -> None:
        self.conn.execute(charging_sessions.insert().values(**_asdict(row)))

    def session(self, session_id: int) -> SessionRow | None:
        row = self.conn.execute(
            select(charging_sessions).where(charging_sessions.c.id == session_id)
        ).first()
        return None if row is None else SessionRow(*row)

    def session_by_tx(self, charger_id: str, tx_key: str) -> SessionRow | None:
        c = charging_sessions.c
        row = self.conn.execute(
            select(charging_sessions).where(c.charger_id == charger_id, c.tx_key == tx_key)
        ).first()
        return None if row is None else SessionRow(*row)

    def insert_stop(self, row: StopRow) -> None:
        self.conn.execute(charging_session_stops.insert().values(**_asdict(row)))

    def stop(self, session_id: int) -> StopRow | None:
        row = self.conn.execute(
            select(charging_session_stops).where(charging_session_stops.c.id == session_id)
        ).first()
        return None if row is None else StopRow(*row)

    def sessions(
        self, *, operator_id: int | None = None, owner_id: int | None = None, after: int = 0,
        limit: int = 100,
    ) -> list[tuple[SessionRow, StopRow | None, ChainTotals]]:
        """Sessions of an operator or of a vehicle owner after id `after`, by id, each with its
        stop and what its chain credited."""
        s, st = charging_sessions.c, charging_session_stops.c
        where = [s.id > after]
        if operator_id is not None:
            where.append(s.operator_id == operator_id)
        if owner_id is not None:
            where.append(s.owner_id == owner_id)
        rows = self.conn.execute(
            select(charging_sessions, charging_session_stops)
            .select_from(charging_sessions.outerjoin(charging_session_stops, st.id == s.id))
            .where(*where)
            .order_by(s.id)
            .limit(limit)
        ).all()
        n = len(charging_sessions.c)
        found = [
            (SessionRow(*row[:n]), StopRow(*row[n:]) if row[n] is not None else None)
            for row in rows
        ]
        totals = self.chain_totals([session.chain_id for session, _ in found])
        return [(a, b, totals.get(a.chain_id, ChainTotals())) for a, b in found]

    # -- the readings planned for each session's chain -----------------------------------------

    def newest_planned(self, chain_id: str) -> Planned | None:
        """The chain's planned reading with the highest seq."""
        c = charging_chain_seqs.c
        row = self.conn.execute(
            select(c.seq, c.ts, c.import_wh, c.export_wh)
            .where(c.chain_id == chain_id)
            .order_by(c.seq.desc())
            .limit(1)
        ).first()
        return None if row is None else Planned(*row)

    def planned_at(self, chain_id: str, timestamps: Collection[int]) -> list[Planned]:
        """The chain's planned readings of these sample times, by seq."""
        if not timestamps:
            return []
        c = charging_chain_seqs.c
        rows = self.conn.execute(
            select(c.seq, c.ts, c.import_wh, c.export_wh)
            .where(c.chain_id == chain_id, c.ts.in_(sorted(timestamps)))
            .order_by(c.seq)
        ).all()
        return [Planned(*row) for row in rows]

    def insert_planned(self, chain_id: str, rows: Sequence[Planned]) -> None:
        """Record planned readings; callers hold the ledger's write lock (a seq or sample time
        planned twice is refused by the table's keys, never stored twice)."""
        if rows:
            self.conn.execute(
                charging_chain_seqs.insert(),
                [
                    {"chain_id": chain_id, "seq": p.seq, "ts": p.ts, "import_wh": p.import_wh,
                     "export_wh": p.export_wh}
                    for p in rows
                ],
            )  # fmt: skip

    def chain_totals(self, chain_ids: Sequence[str]) -> dict[str, ChainTotals]:
        """What each chain's `ok` intervals credited (one query, by the device index)."""
        if not chain_ids:
            return {}
        i = meter_intervals.c
        rows = self.conn.execute(
            select(
                i.device_id,
                func.sum(i.import_wh),
                func.sum(i.export_wh),
                func.sum(i.carbon_g),
                func.sum(i.credit_milli),
            )
            .where(i.device_id.in_(list(chain_ids)), i.status == "ok")
            .group_by(i.device_id)
        ).all()
        return {r[0]: ChainTotals(*(int(v or 0) for v in r[1:])) for r in rows}


def _asdict(row: object) -> dict[str, object]:
    return {name: getattr(row, name) for name in row.__dataclass_fields__}  # type: ignore[attr-defined]
