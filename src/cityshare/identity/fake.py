"""An in-memory identity repository, so that enrolment's and devices' rules can be tested without
a database (`tests/unit/test_identity_handlers.py`); the real-database tests
(`tests/integration/test_identity_service.py`) stay the proof that `IdentityRepository` behaves
the same.

It is all of `model.IdentityStore` (mypy checks that below), with the same answers: ids count up
from the highest stored, "current" state is a query over the stored facts (a resident's VID is
their latest enrolment's, a key is live until revoked), and what the tables' keys refuse (an id
or a jti stored twice, a public key registered twice, a key revoked twice) raises ValueError.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from cityshare.identity.model import (
    AccessRow,
    DeviceKeyRow,
    DeviceRow,
    EnrolmentRow,
    OrganisationRow,
    ResidentRow,
)

if TYPE_CHECKING:
    from cityshare.identity.model import IdentityStore


class FakeIdentityRepository:
    def __init__(self) -> None:
        self.residents: dict[int, ResidentRow] = {}
        self.enrolments: dict[int, EnrolmentRow] = {}
        self.organisations_by_id: dict[int, OrganisationRow] = {}
        self.devices: dict[str, DeviceRow] = {}
        #: Keys as inserted (never revoked); revocations are kept apart, as in the tables.
        self.keys: dict[int, DeviceKeyRow] = {}
        #: key id -> (revoked_at, reason)
        self.revocations: dict[int, tuple[int, str]] = {}
        self.access: dict[int, AccessRow] = {}

    # -- residents and enrolments ----------------------------------------------------------

    def next_resident_id(self) -> int:
        return max(self.residents, default=0) + 1

    def resident_by_pseudonym(self, pseudonym: str) -> ResidentRow | None:
        return next((r for r in self.residents.values() if r.pseudonym == pseudonym), None)

    def resident(self, resident_id: int) -> ResidentRow | None:
        return self.residents.get(resident_id)

    def insert_resident(self, row: ResidentRow) -> None:
        if row.id in self.residents or self.resident_by_pseudonym(row.pseudonym) is not None:
            raise ValueError(f"resident {row.id} exists")  # the primary and unique keys
        self.residents[row.id] = row

    def jti_used(self, jti: str) -> bool:
        return any(e.jti == jti for e in self.enrolments.values())

    def next_enrolment_id(self) -> int:
        return max(self.enrolments, default=0) + 1

    def insert_enrolment(self, row: EnrolmentRow) -> None:
        if row.id in self.enrolments or self.jti_used(row.jti):
            raise ValueError(f"enrolment {row.id} exists")
        self.enrolments[row.id] = replace(row, attrs=dict(row.attrs))

    def latest_enrolment(self, resident_id: int) -> EnrolmentRow | None:
        mine = [e for e in self.enrolments.values() if e.resident_id == resident_id]
        return max(mine, key=lambda e: e.id, default=None)

    def resident_by_vid(self, vid: str) -> int | None:
        """The resident whose *current* VID this is (a replaced VID resolves to no one)."""
        for e in self.enrolments.values():
            if e.vid == vid:
                latest = self.latest_enrolment(e.resident_id)
                if latest is not None and latest.vid == vid:
                    return latest.resident_id
        return None

    # -- organisations ---------------------------------------------------------------------

    def next_organisation_id(self, base: int) -> int:
        return max(self.organisations_by_id) + 1 if self.organisations_by_id else base

    def insert_organisation(self, row: OrganisationRow) -> None:
        if row.id in self.organisations_by_id or self.organisation_named(row.name) is not None:
            raise ValueError(f"organisation {row.id} exists")
        self.organisations_by_id[row.id] = row

    def organisation(self, org_id: int) -> OrganisationRow | None:
        return self.organisations_by_id.get(org_id)

    def organisation_named(self, name: str) -> OrganisationRow | None:
        return next((o for o in self.organisations_by_id.values() if o.name == name), None)

    def organisations(self, kind: str | None = None) -> list[OrganisationRow]:
        return [
            o for _, o in sorted(self.organisations_by_id.items()) if kind is None or o.kind == kind
        ]

    # -- devices ---------------------------------------------------------------------------

    def insert_device(self, row: DeviceRow) -> None:
        if row.id in self.devices:
            raise ValueError(f"device {row.id} exists")
        self.devices[row.id] = row

    def device(self, device_id: str) -> DeviceRow | None:
        return self.devices.get(device_id)

    def devices_of(self, owner_id: int) -> list[DeviceRow]:
        mine = [d for d in self.devices.values() if d.owner_id == owner_id]
        return sorted(mine, key=lambda d: d.registered_at)

    def next_device_key_id(self) -> int:
        return max(self.keys, default=0) + 1

    def insert_key(self, row: DeviceKeyRow) -> None:
        if row.id in self.keys or self.key_exists(row.public_key):
            raise ValueError(f"device key {row.id} exists")
        self.keys[row.id] = replace(row, revoked_at=None, reason=None)

    def key_exists(self, public_key: bytes) -> bool:
        return any(k.public_key == public_key for k in self.keys.values())

    def keys_of(self, device_ids: Sequence[str]) -> list[DeviceKeyRow]:
        wanted = set(device_ids)
        found = []
        for key_id, key in sorted(self.keys.items()):
            if key.device_id in wanted:
                revoked_at, reason = self.revocations.get(key_id, (None, None))
                found.append(replace(key, revoked_at=revoked_at, reason=reason))
        return found

    def revoke_key(self, key_id: int, reason: str, at: int) -> None:
        if key_id in self.revocations:
            raise ValueError(f"device key {key_id} is revoked already")
        self.revocations[key_id] = (at, reason)

    # -- access records --------------------------------------------------------------------

    def next_access_id(self) -> int:
        return max(self.access, default=0) + 1

    def insert_access(self, rows: Sequence[AccessRow]) -> None:
        if any(r.id in self.access for r in rows):
            raise ValueError("an access record exists")
        self.access.update((r.id, r) for r in rows)

    def access_of(self, resident_id: int, *, after: int, limit: int) -> list[AccessRow]:
        mine = [
            r for i, r in sorted(self.access.items()) if r.resident_id == resident_id and i > after
        ]
        return mine[:limit]


if TYPE_CHECKING:

    def _is_an_identity_store(fake: FakeIdentityRepository) -> IdentityStore:
        return fake
