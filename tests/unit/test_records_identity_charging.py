"""The identity and charging records' codecs write the same leaf bytes as the hand-written
encoders they replaced: the bytes below are those encoders' output, written out literally (a
leaf is a contract: auditors and the twin read it), for a row object (`of`, what a handler
logs) and for the same row as stored (`of_mapping`, what `audit verify` re-encodes)."""

from __future__ import annotations

from typing import Any

import pytest

from cityshare.charging import records as charging
from cityshare.charging.model import ChargerSecretRow, IdTokenRow, SessionRow, StopRow
from cityshare.identity import records as identity
from cityshare.identity.model import (
    AccessRow,
    DeviceKeyRow,
    DeviceRow,
    EnrolmentRow,
    OrganisationRow,
    ResidentRow,
)
from cityshare.tlog.entries import RecordCodec

TOKEN_HASH = "ab" * 32

# (codec, row object, the row as its table stores it, the old encoder's bytes)
CASES: list[tuple[RecordCodec, Any, dict[str, Any], bytes]] = [
    (
        identity.ORGANISATION,
        OrganisationRow(900000000001, "operator", "Metro Power", "energy", 1700000000000000001),
        {"id": 900000000001, "kind": "operator", "name": "Metro Power", "domain": "energy",
         "created_at": 1700000000000000001},
        b'{"at":1700000000000000001,"domain":"energy","id":900000000001,"kind":"operator",'
        b'"name":"Metro Power","type":"organisation"}',
    ),
    (
        identity.RESIDENT,
        ResidentRow(7, "ps-abc", "issuer.example", 1700000000000000002),
        {"id": 7, "pseudonym": "ps-abc", "issuer": "issuer.example",
         "enrolled_at": 1700000000000000002},
        b'{"at":1700000000000000002,"id":7,"issuer":"issuer.example","pseudonym":"ps-abc",'
        b'"type":"resident"}',
    ),
    (
        identity.ENROLMENT,
        EnrolmentRow(8, 7, "1234567890123452", {"ward": "12", "age_band": "30-39"}, "jti-1",
                     1700000000000000003),
        {"id": 8, "resident_id": 7, "vid": "1234567890123452",
         "attrs": '{"age_band":"30-39","ward":"12"}', "jti": "jti-1",
         "accepted_at": 1700000000000000003},
        b'{"at":1700000000000000003,"attrs":{"age_band":"30-39","ward":"12"},"id":8,'
        b'"jti":"jti-1","resident_id":7,"type":"enrolment","vid":"1234567890123452"}',
    ),
    (
        identity.DEVICE,
        DeviceRow("dev-1", 7, "meter", None, 1700000000000000004),
        {"id": "dev-1", "owner_id": 7, "kind": "meter", "label": None,
         "registered_at": 1700000000000000004},
        b'{"at":1700000000000000004,"id":"dev-1","kind":"meter","label":null,"owner_id":7,'
        b'"type":"device"}',
    ),
    (
        identity.DEVICE_KEY,
        DeviceKeyRow(9, "dev-1", bytes(range(32)), 1700000000000000005),
        # PostgreSQL's driver returns a memoryview for a bytea column.
        {"id": 9, "device_id": "dev-1", "public_key": memoryview(bytes(range(32))),
         "added_at": 1700000000000000005},
        b'{"at":1700000000000000005,"device_id":"dev-1","id":9,'
        b'"public_key":"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8","type":"device_key"}',
    ),
    (
        identity.ACCESS,
        AccessRow(10, 7, "operator:alice", "operator", "billing", "statement",
                  1700000000000000006),
        {"id": 10, "resident_id": 7, "principal": "operator:alice", "role": "operator",
         "purpose": "billing", "what": "statement", "at": 1700000000000000006},
        b'{"at":1700000000000000006,"id":10,"principal":"operator:alice","purpose":"billing",'
        b'"resident_id":7,"role":"operator","type":"access","what":"statement"}',
    ),
    (
        charging.CHARGER_SECRET,
        ChargerSecretRow(3, "chg-1", "scrypt$secret", 1700000000000000001),
        # The hash and the seal are stored, never logged.
        {"id": 3, "device_id": "chg-1", "secret_hash": "scrypt$secret",
         "set_at": 1700000000000000001, "seal": "00" * 32},
        b'{"at":1700000000000000001,"device_id":"chg-1","id":3,"type":"charger_secret"}',
    ),
    (
        charging.ID_TOKEN,
        IdTokenRow(4, "veh-1", TOKEN_HASH, 1700000000000000002),
        {"id": 4, "device_id": "veh-1", "token_hash": TOKEN_HASH,
         "added_at": 1700000000000000002},
        b'{"at":1700000000000000002,"device_id":"veh-1","id":4,"token_hash":"'
        + TOKEN_HASH.encode()
        + b'","type":"vehicle_id_token"}',
    ),
    (
        charging.SESSION,
        SessionRow(5, "chg-1", 900000000001, "1.6", "tx-17", 1, TOKEN_HASH, "accepted", "veh-1",
                   7, "chain-5", 1700000000000000003, 1000, 1700000000000000004),
        {"id": 5, "charger_id": "chg-1", "operator_id": 900000000001, "ocpp_version": "1.6",
         "tx_key": "tx-17", "connector_id": 1, "token_hash": TOKEN_HASH, "status": "accepted",
         "vehicle_id": "veh-1", "owner_id": 7, "chain_id": "chain-5",
         "started_ts": 1700000000000000003, "meter_start_wh": 1000,
         "created_at": 1700000000000000004},
        b'{"chain_id":"chain-5","charger_id":"chg-1","connector_id":1,'
        b'"created_at":1700000000000000004,"id":5,"meter_start_wh":1000,"ocpp_version":"1.6",'
        b'"operator_id":900000000001,"owner_id":7,"started_ts":1700000000000000003,'
        b'"status":"accepted","token_hash":"'
        + TOKEN_HASH.encode()
        + b'","tx_key":"tx-17","type":"charging_session","vehicle_id":"veh-1"}',
    ),
    (
        charging.STOP,
        StopRow(5, 1700000000000000005, 4500, "EVDisconnected", 1700000000000000006),
        {"id": 5, "stopped_ts": 1700000000000000005, "meter_stop_wh": 4500,
         "reason": "EVDisconnected", "recorded_at": 1700000000000000006},
        b'{"id":5,"meter_stop_wh":4500,"reason":"EVDisconnected",'
        b'"recorded_at":1700000000000000006,"stopped_ts":1700000000000000005,'
        b'"type":"charging_session_stop"}',
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("codec", "row", "stored", "expected"), CASES, ids=[c[0].type for c in CASES]
)
def test_a_codec_writes_the_leaf_the_old_encoder_wrote(
    codec: RecordCodec, row: Any, stored: dict[str, Any], expected: bytes
) -> None:
    assert codec.of(row) == expected
    assert codec.of_mapping(stored) == expected


# Records without a row type: the handler logs the stored columns' mapping.
ROWLESS: list[tuple[RecordCodec, dict[str, Any], bytes]] = [
    (
        identity.DEVICE_KEY_REVOKED,
        {"id": 9, "reason": "rotated", "revoked_at": 1700000000000000007},
        b'{"at":1700000000000000007,"id":9,"reason":"rotated","type":"device_key_revoked"}',
    ),
    (
        charging.ID_TOKEN_REMOVED,
        {"id": 4, "removed_at": 1700000000000000007},
        b'{"at":1700000000000000007,"id":4,"type":"vehicle_id_token_removed"}',
    ),
]


@pytest.mark.parametrize(("codec", "stored", "expected"), ROWLESS, ids=[c[0].type for c in ROWLESS])
def test_a_rowless_codec_writes_the_leaf_the_old_encoder_wrote(
    codec: RecordCodec, stored: dict[str, Any], expected: bytes
) -> None:
    assert codec.of_mapping(stored) == expected


def test_every_record_type_is_registered_once_with_its_table() -> None:
    registered = {r.type: r.table for r in [*identity.RECORDS, *charging.RECORDS]}
    assert registered == {
        "organisation": "organisations",
        "resident": "residents",
        "enrolment": "enrolments",
        "device": "devices",
        "device_key": "device_keys",
        "device_key_revoked": "device_key_revocations",
        "access": "access_records",
        "charger_secret": "charger_secrets",
        "vehicle_id_token": "vehicle_id_tokens",
        "vehicle_id_token_removed": "vehicle_id_token_removals",
        "charging_session": "charging_sessions",
        "charging_session_stop": "charging_session_stops",
    }
