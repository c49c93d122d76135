"""Devices residents own (meters, chargers, vehicles, …): kinds, ids, keys, pseudonyms.

What a device sends is signed with its Ed25519 key. Counterparties (a charging-station or
parking operator) never learn a vehicle's device id: each sees a pseudonym keyed to itself,
so two organisations cannot join their records to track a vehicle across the city.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from enum import StrEnum


class DeviceKind(StrEnum):
    METER = "meter"
    CHARGER = "charger"
    VEHICLE = "vehicle"
    PARKING_METER = "parking_meter"
    VALIDATOR = "validator"
    PHONE = "phone"


DEVICE_ID_RE = re.compile(r"^dev-[a-z2-7]{16}$")
LABEL_RE = re.compile(r"^[\w .,:()/#-]{1,64}$")
COUNTERPARTY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
MAX_LIVE_KEYS = 2  # during a rotation the old key may overlap the new one


class DeviceError(ValueError):
    """A device request that cannot be accepted, with the reason."""


def new_device_id() -> str:
    raw = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return f"dev-{raw}"


def parse_public_key(text: str) -> bytes:
    """An Ed25519 public key sent as base64url (or base64) of its 32 raw bytes."""
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError) as exc:
        raise DeviceError("the public key is not base64") from exc
    if len(raw) != 32:
        raise DeviceError("an Ed25519 public key is 32 bytes")
    return raw


def encode_public_key(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def counterparty_pseudonym(secret: bytes, device_id: str, counterparty: str) -> str:
    """The name `counterparty` knows this device by: stable for it, unlinkable for others."""
    mac = hmac.new(secret, f"vehicle/v1\x00{counterparty}\x00{device_id}".encode(), hashlib.sha256)
    return "veh-" + base64.b32encode(mac.digest()[:15]).decode().lower()
