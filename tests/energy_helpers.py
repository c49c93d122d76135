"""Builders for energy tests: a resident with a registered meter, signed readings, balances."""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.bootstrap import Platform
from cityshare.energy import commands as energy_commands
from cityshare.energy.handlers import IngestOutcome
from cityshare.identity import commands as identity_commands
from cityshare.identity.devices import parse_public_key
from cityshare.identity.residents import wallet_account_id
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import Ledger
from identity_helpers import assertion, new_key


@dataclass
class Meter:
    resident_id: int
    device_id: str
    key: Ed25519PrivateKey
    registered_at: int  # unix seconds

    def reading(self, seq: int, ts: int, import_wh: int = 0, export_wh: int = 0) -> str:
        return sign(
            self.key, self.device_id, seq=seq, ts=ts, import_wh=import_wh, export_wh=export_wh
        )


def sign(key: Ed25519PrivateKey, device_id: str, **claims: object) -> str:
    return jwt.encode(dict(claims), key, algorithm="EdDSA", headers={"kid": device_id})


def enrol(platform: Platform, person: str = "asha") -> int:
    resident: int = platform.bus.handle(
        identity_commands.EnrolResident(assertion(platform, person))
    ).resident_id
    return resident


def add_device(platform: Platform, resident_id: int, kind: str = "meter") -> Meter:
    key, public = new_key()
    device = platform.bus.handle(
        identity_commands.RegisterDevice(resident_id, kind, parse_public_key(public), "roof")
    )
    return Meter(resident_id, device.id, key, platform.clock.now_ns() // 1_000_000_000)


def resident_with_meter(platform: Platform, person: str = "asha", kind: str = "meter") -> Meter:
    return add_device(platform, enrol(platform, person), kind)


def ingest(platform: Platform, readings: list[str], source: str = "http") -> IngestOutcome:
    outcome: IngestOutcome = platform.bus.handle(energy_commands.IngestReadings(readings, source))
    return outcome


def wallets(platform: Platform, resident_id: int) -> dict[str, int]:
    """The resident's CREDIT (milli-points), CARBON (g) and ENERGY (Wh, net export) balances."""
    out = {}
    for ledger in (Ledger.CREDIT, Ledger.CARBON, Ledger.ENERGY):
        account = ledger_service.get_account(platform.uow(), wallet_account_id(resident_id, ledger))
        assert account is not None
        out[ledger.name] = account.balance
    return out
