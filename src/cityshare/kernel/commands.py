"""Commands: what someone asks the platform to do, named in the imperative."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cityshare.charging.model import Sample
from cityshare.ledger.model import NewAccount, Transfer


class Command:
    """Base class of every command."""


@dataclass(frozen=True, slots=True)
class CreateAccounts(Command):
    """A client opens accounts: ids the platform opens itself answer `reserved_id`."""

    accounts: Sequence[NewAccount]
    #: All or nothing: if any account fails, none is created.
    atomic: bool = True


@dataclass(frozen=True, slots=True)
class CreateTransfers(Command):
    """A client posts transfers, with ids of its own: 1 … 2^61-1 (`domain.ids`); the platform's
    capabilities post theirs with `services.ledger.post_transfers` instead."""

    transfers: Sequence[Transfer]
    #: All or nothing: if any transfer fails, none is written (HTTP's default). When False each
    #: transfer (or linked chain) stands alone, as in TigerBeetle.
    atomic: bool = False


@dataclass(frozen=True, slots=True)
class ExpirePendingTransfers(Command):
    """Release the holds whose timeout has passed (at most `limit` in one transaction)."""

    limit: int = 10_000


@dataclass(frozen=True, slots=True)
class PurgeIdempotencyKeys(Command):
    """Forget the answers to keyed writes older than the retention setting (`limit` per
    transaction, until none is left)."""

    limit: int = 10_000


@dataclass(frozen=True, slots=True)
class EnrolResident(Command):
    """Accept an issuer's signed enrolment assertion: create the resident (and wallets) on first
    sight, record the enrolment (current VID and attributes) every time."""

    assertion: str


@dataclass(frozen=True, slots=True)
class CreateOrganisation(Command):
    """Register an operator, provider or community asset and open its wallets."""

    kind: str
    name: str
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class RegisterDevice(Command):
    """Register a device of a party (a resident or an organisation) with its public key."""

    owner_id: int
    kind: str
    public_key: bytes
    label: str | None = None


@dataclass(frozen=True, slots=True)
class RevokeDevice(Command):
    owner_id: int
    device_id: str


@dataclass(frozen=True, slots=True)
class RotateDeviceKey(Command):
    """Add a new key to a device and revoke the keys it had."""

    owner_id: int
    device_id: str
    public_key: bytes


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One read of one resident's personal data, as it is recorded."""

    resident_id: int
    principal: str
    role: str
    purpose: str
    what: str


@dataclass(frozen=True, slots=True)
class RecordAccess(Command):
    requests: Sequence[AccessRequest]


@dataclass(frozen=True, slots=True)
class AddCosignatures(Command):
    """Keep the witness cosignatures carried by `note`, a checkpoint the log itself signed."""

    note: str


@dataclass(frozen=True, slots=True)
class AttestedReading:
    """A reading a door measured itself, from a device it authenticated (the OCPP central
    system, from a charger's meter values): no signature to check; `evidence` (the message
    it came from, with only this reading's meter values) is stored and logged in the place of
    a JWS. Only the in-process OCPP door
    builds these; no HTTP or MQTT input can become one."""

    device_id: str  # the reading chain (an OCPP transaction's, `ocpp-...`)
    kind: str  # the device kind whose rules apply ("charger")
    owner_id: int  # the party credited (the vehicle's owner)
    registered_at: int  # ns since the epoch: readings stamped before it are anomalies
    seq: int
    ts: int
    import_wh: int
    export_wh: int
    evidence: str


@dataclass(frozen=True, slots=True)
class IngestReadings(Command):
    """Verify, deduplicate, store and credit signed meter readings (JWS strings, see
    `cityshare.energy.readings`). Every door hands over the same command: `source` names it
    (http, mqtt or ocpp). Each item gets its own result; bad items never stop good ones.
    The OCPP door hands over `AttestedReading`s (source "ocpp" only)."""

    readings: Sequence[str | AttestedReading]
    source: str = "http"


@dataclass(frozen=True, slots=True)
class SweepWaitingReadings(Command):
    """Join the readings that have waited out the gap horizon beside their device's chain (a
    meter that went silent after a reading was lost sends nothing that would bridge the gap),
    for at most `limit` devices per transaction, until none is overdue."""

    limit: int = 1000


@dataclass(frozen=True, slots=True)
class ShareGrant:
    """New shares of a community asset for the resident holding this virtual id."""

    vid: str
    shares: int


@dataclass(frozen=True, slots=True)
class IssueShares(Command):
    """Issue new shares of a community asset (all grants or none); `actor` names who asked."""

    asset_id: int
    grants: Sequence[ShareGrant]
    actor: str


@dataclass(frozen=True, slots=True)
class TransferShares(Command):
    """A holder gives some of their shares of a community asset to another resident."""

    asset_id: int
    from_resident: int
    to_vid: str
    shares: int
    actor: str


@dataclass(frozen=True, slots=True)
class DistributeCommunityEarnings(Command):
    """Pay out what the asset's wallets held at the end of one settlement period to its
    holders at that instant, pro rata; a rerun for the same period pays nothing again."""

    asset_id: int
    period_end_ns: int


@dataclass(frozen=True, slots=True)
class SettleCommunityAssets(Command):
    """Distribute every ended settlement period not yet settled (of one asset, or of all;
    only the period ending at `period_end_ns` when one is given), oldest first."""

    asset_id: int | None = None
    period_end_ns: int | None = None


# -- charging (OCPP) ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SetChargerPassword(Command):
    """Set the password a charger of `org_id` logs in to the OCPP central system with."""

    org_id: int
    device_id: str
    password: str


@dataclass(frozen=True, slots=True)
class RegisterIdToken(Command):
    """A vehicle's owner registers the id token (OCPP idTag / IdToken) it presents."""

    owner_id: int
    device_id: str
    id_token: str


@dataclass(frozen=True, slots=True)
class RemoveIdToken(Command):
    owner_id: int
    device_id: str
    token_id: int


@dataclass(frozen=True, slots=True)
class StartChargingSession(Command):
    """A charger started a transaction: record who it credits (once per `tx_key`; a resent
    start returns the session already recorded)."""

    charger_id: str
    ocpp_version: str
    tx_key: str
    connector_id: int
    id_token: str
    started_ts: int
    meter_start_wh: int | None = None


@dataclass(frozen=True, slots=True)
class StopChargingSession(Command):
    """A charger ended a transaction (recorded once; a resent stop changes nothing)."""

    charger_id: str
    session_id: int
    stopped_ts: int
    meter_stop_wh: int | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class PlanChargingReadings(Command):
    """Give the samples of one OCPP message of a session their readings (sequence numbers in
    the session's chain, recorded so that every process maps a sample to the same reading);
    refused while the charger, as it was admitted (its operator and the password it
    presented, `charger_secrets` row `secret_id`), is admitted no longer."""

    charger_id: str
    operator_id: int
    secret_id: int
    session_id: int
    samples: Sequence[Sample]


@dataclass(frozen=True, slots=True)
class SetPriceList(Command):
    """A new version of a provider's price list (`document` as sent: `prices`, paise per kWh
    per time-of-day window, and an optional `effective_from`); `set_by` names who set it."""

    provider_id: int
    document: object
    set_by: str


@dataclass(frozen=True, slots=True)
class ChooseProvider(Command):
    """A resident buys their imported energy from this provider from now on."""

    resident_id: int
    provider_id: int


@dataclass(frozen=True, slots=True)
class TopUpWallet(Command):
    """Credit `amount` paise to a resident's INR wallet from the platform's INR settlement
    account: fiat that reached the platform's bank under `reference` (its idempotency key)."""

    resident_id: int
    amount: int
    reference: str
    actor: str


@dataclass(frozen=True, slots=True)
class BillEnergy(Command):
    """Bill every meter interval recorded up to `up_to_ns` (default: now) and not billed yet,
    paying from residents' INR wallets what they can; `batch` intervals per transaction."""

    up_to_ns: int | None = None
    batch: int = 4096
