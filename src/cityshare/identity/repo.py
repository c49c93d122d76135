"""Identity storage: residents, enrolments, devices and keys, access records (SQLAlchemy Core).

None of this is a hot path, so it reads like the schema. Every row is an immutable fact;
"current" state (a resident's VID, a device's live keys) is a query over the facts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, Table, func, select

from cityshare.identity.model import (
    AccessRow,
    DeviceKeyRow,
    DeviceRow,
    EnrolmentRow,
    OrganisationRow,
    ResidentRow,
)
from cityshare.identity.tables import (
    access_records,
    device_key_revocations,
    device_keys,
    devices,
    enrolments,
    organisations,
    residents,
)


def attrs_json(attrs: dict[str, str]) -> str:
    return json.dumps(attrs, sort_keys=True, separators=(",", ":"))


class IdentityRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def next_id(self, table: Table) -> int:
        """The next id of an integer-keyed table; callers hold the ledger's write lock."""
        current = self.conn.execute(select(func.max(table.c.id))).scalar()
        return int(current or 0) + 1

    def next_resident_id(self) -> int:
        return self.next_id(residents)

    def next_enrolment_id(self) -> int:
        return self.next_id(enrolments)

    def next_device_key_id(self) -> int:
        return self.next_id(device_keys)

    def next_access_id(self) -> int:
        return self.next_id(access_records)

    # -- residents and enrolments ----------------------------------------------------------

    def resident_by_pseudonym(self, pseudonym: str) -> ResidentRow | None:
        row = self.conn.execute(select(residents).where(residents.c.pseudonym == pseudonym)).first()
        return None if row is None else ResidentRow(*row)

    def resident(self, resident_id: int) -> ResidentRow | None:
        row = self.conn.execute(select(residents).where(residents.c.id == resident_id)).first()
        return None if row is None else ResidentRow(*row)

    def insert_resident(self, row: ResidentRow) -> None:
        self.conn.execute(
            residents.insert().values(
                id=row.id, pseudonym=row.pseudonym, issuer=row.issuer, enrolled_at=row.enrolled_at
            )
        )

    def jti_used(self, jti: str) -> bool:
        found = self.conn.execute(select(enrolments.c.id).where(enrolments.c.jti == jti)).first()
        return found is not None

    def insert_enrolment(self, row: EnrolmentRow) -> None:
        self.conn.execute(
            enrolments.insert().values(
                id=row.id,
                resident_id=row.resident_id,
                vid=row.vid,
                attrs=attrs_json(row.attrs),
                jti=row.jti,
                accepted_at=row.accepted_at,
            )
        )

    def latest_enrolment(self, resident_id: int) -> EnrolmentRow | None:
        row = self.conn.execute(
            select(enrolments)
            .where(enrolments.c.resident_id == resident_id)
            .order_by(enrolments.c.id.desc())
            .limit(1)
        ).first()
        return None if row is None else _enrolment(row)

    def resident_by_vid(self, vid: str) -> int | None:
        """The resident whose *current* VID this is (a replaced VID resolves to no one)."""
        for row in self.conn.execute(
            select(enrolments.c.resident_id).where(enrolments.c.vid == vid)
        ):
            latest = self.latest_enrolment(row.resident_id)
            if latest is not None and latest.vid == vid:
                return latest.resident_id
        return None

    # -- organisations ---------------------------------------------------------------------

    def next_organisation_id(self, base: int) -> int:
        current = self.conn.execute(select(func.max(organisations.c.id))).scalar()
        return base if current is None else int(current) + 1

    def insert_organisation(self, row: OrganisationRow) -> None:
        self.conn.execute(
            organisations.insert().values(
                id=row.id,
                kind=row.kind,
                name=row.name,
                domain=row.domain,
                created_at=row.created_at,
            )
        )

    def organisation(self, org_id: int) -> OrganisationRow | None:
        row = self.conn.execute(select(organisations).where(organisations.c.id == org_id)).first()
        return None if row is None else OrganisationRow(*row)

    def organisation_named(self, name: str) -> OrganisationRow | None:
        row = self.conn.execute(select(organisations).where(organisations.c.name == name)).first()
        return None if row is None else OrganisationRow(*row)

    def organisations(self, kind: str | None = None) -> list[OrganisationRow]:
        query = select(organisations).order_by(organisations.c.id)
        if kind is not None:
            query = query.where(organisations.c.kind == kind)
        return [OrganisationRow(*row) for row in self.conn.execute(query)]

    # -- devices ---------------------------------------------------------------------------

    def insert_device(self, row: DeviceRow) -> None:
        self.conn.execute(
            devices.insert().values(
                id=row.id,
                owner_id=row.owner_id,
                kind=row.kind,
                label=row.label,
                registered_at=row.registered_at,
            )
        )

    def device(self, device_id: str) -> DeviceRow | None:
        row = self.conn.execute(select(devices).where(devices.c.id == device_id)).first()
        return None if row is None else DeviceRow(*row)

    def devices_of(self, owner_id: int) -> list[DeviceRow]:
        rows = self.conn.execute(
            select(devices).where(devices.c.owner_id == owner_id).order_by(devices.c.registered_at)
        )
        return [DeviceRow(*row) for row in rows]

    def insert_key(self, row: DeviceKeyRow) -> None:
        self.conn.execute(
            device_keys.insert().values(
                id=row.id, device_id=row.device_id, public_key=row.public_key, added_at=row.added_at
            )
        )

    def key_exists(self, public_key: bytes) -> bool:
        found = self.conn.execute(
            select(device_keys.c.id).where(device_keys.c.public_key == public_key)
        ).first()
        return found is not None

    def keys_of(self, device_ids: Sequence[str]) -> list[DeviceKeyRow]:
        if not device_ids:
            return []
        rows = self.conn.execute(
            select(
                device_keys,
                device_key_revocations.c.revoked_at,
                device_key_revocations.c.reason,
            )
            .outerjoin(device_key_revocations, device_key_revocations.c.id == device_keys.c.id)
            .where(device_keys.c.device_id.in_(list(device_ids)))
            .order_by(device_keys.c.id)
        )
        return [
            DeviceKeyRow(r.id, r.device_id, bytes(r.public_key), r.added_at, r.revoked_at, r.reason)
            for r in rows
        ]

    def revoke_key(self, key_id: int, reason: str, at: int) -> None:
        self.conn.execute(
            device_key_revocations.insert().values(id=key_id, reason=reason, revoked_at=at)
        )

    # -- access records --------------------------------------------------------------------

    def insert_access(self, rows: Sequence[AccessRow]) -> None:
        if rows:
            self.conn.execute(
                access_records.insert(),
                [
                    {
                        "id": r.id,
                        "resident_id": r.resident_id,
                        "principal": r.principal,
                        "role": r.role,
                        "purpose": r.purpose,
                        "what": r.what,
                        "at": r.at,
                    }
                    for r in rows
                ],
            )

    def access_of(self, resident_id: int, *, after: int, limit: int) -> list[AccessRow]:
        rows = self.conn.execute(
            select(access_records)
            .where((access_records.c.resident_id == resident_id) & (access_records.c.id > after))
            .order_by(access_records.c.id)
            .limit(limit)
        )
        return [AccessRow(*row) for row in rows]


def _enrolment(row: Row[Any]) -> EnrolmentRow:
    return EnrolmentRow(
        row.id, row.resident_id, row.vid, json.loads(row.attrs), row.jti, row.accepted_at
    )
