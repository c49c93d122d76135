"""Identity's audit-log records: how each fact it writes becomes a leaf, and is checked again.

Every fact the identity handlers write is also a leaf of the audit log in the same transaction,
encoded by the codecs below; `cityshare audit verify` re-encodes the stored rows with the same
codecs (`RECORDS`), so a changed row cannot hide. The leaf bytes are a contract (auditors and
the twin read them): the logged keys and forms here must not change.
"""

from __future__ import annotations

import json

from cityshare.identity.devices import encode_public_key
from cityshare.kernel.capability import LoggedRecord
from cityshare.tlog.entries import RecordCodec

ORGANISATION = RecordCodec(
    "organisation", ("id", "kind", "name", "domain", "at"), columns={"at": "created_at"}
)
RESIDENT = RecordCodec(
    "resident", ("id", "pseudonym", "issuer", "at"), columns={"at": "enrolled_at"}
)
ENROLMENT = RecordCodec(
    "enrolment",
    ("id", "resident_id", "vid", "attrs", "jti", "at"),
    columns={"at": "accepted_at"},
    # Stored as canonical JSON text (`repo.attrs_json`), logged as the object it holds.
    stored={"attrs": json.loads},
)
DEVICE = RecordCodec(
    "device", ("id", "owner_id", "kind", "label", "at"), columns={"at": "registered_at"}
)
DEVICE_KEY = RecordCodec(
    "device_key",
    ("id", "device_id", "public_key", "at"),
    columns={"at": "added_at"},
    logged={"public_key": encode_public_key},
    stored={"public_key": bytes},
)
#: A revocation has no row type: `of_mapping({"id", "reason", "revoked_at"})`.
DEVICE_KEY_REVOKED = RecordCodec(
    "device_key_revoked", ("id", "reason", "at"), columns={"at": "revoked_at"}
)
ACCESS = RecordCodec("access", ("id", "resident_id", "principal", "role", "purpose", "what", "at"))

#: The record types `audit verify` checks both ways: each codec and the table it logs.
RECORDS = [
    LoggedRecord(codec.type, table, codec.of_mapping)
    for codec, table in (
        (ORGANISATION, "organisations"),
        (RESIDENT, "residents"),
        (ENROLMENT, "enrolments"),
        (DEVICE, "devices"),
        (DEVICE_KEY, "device_keys"),
        (DEVICE_KEY_REVOKED, "device_key_revocations"),
        (ACCESS, "access_records"),
    )
]
