"""Energy's derived audit checks (`audit verify` runs them, see `capability.py`)."""

from __future__ import annotations

from cityshare.charging.model import CHAIN_KIND, chain_registered_at
from cityshare.energy.model import ENERGY_TRANSFER_BASE, MAX_INTERVAL_ID, EnergyCode, transfer_id
from cityshare.energy.uow import EnergyUnitOfWork


def derived_problems(
    uow: EnergyUnitOfWork, *, limit: int = 100
) -> list[tuple[str, int | str | None, str]]:
    """`audit verify`'s check of the credits and of the chains marked for the sweep: every `ok`
    interval is posted as exactly its credits (an interval the ledger refused to credit, see
    `_Batch._post`, shows here); a chain is marked exactly while a reading waits above or below
    it, since the oldest of them was received, with the party its readings credit."""
    out: list[tuple[str, int | str | None, str]] = []
    for interval_id, device_id in uow.energy.uncredited_intervals(ENERGY_TRANSFER_BASE, limit):
        if not 0 < interval_id <= MAX_INTERVAL_ID:  # a changed id: reported, not crashed on
            out.append(
                ("meter_intervals", interval_id,
                 f"ok interval of {device_id} has an id out of range, so it names no credits")
            )  # fmt: skip
            continue
        out.append(
            ("meter_intervals", interval_id,
             f"ok interval of {device_id} not posted as its credits (transfers "
             f"{transfer_id(interval_id, EnergyCode.EXPORT_CREDIT)} + 0..3)")
        )  # fmt: skip
    for device_id, derived, marked in uow.energy.waiting_mismatches(limit):
        if marked is None:
            out.append(("meter_waiting", device_id, "readings wait beside its chain, unmarked"))
        elif derived is None:
            out.append(("meter_waiting", device_id, "marked, but no reading waits"))
        else:
            why = f"marked since {marked}, but readings wait since {derived}"
            out.append(("meter_waiting", device_id, why))
    for party, (owner, device_kind, registered_at, session_start) in uow.energy.waiting_parties():
        if device_kind is not None:
            expected = (owner, device_kind, registered_at)
        elif session_start is not None:  # an OCPP transaction's chain, as the door attests it
            expected = (owner, CHAIN_KIND, chain_registered_at(session_start))
        else:
            expected = None
        if expected != (party.owner_id, party.kind, party.registered_at):
            why = f"marked for {(party.owner_id, party.kind, party.registered_at)}, not {expected}"
            out.append(("meter_waiting", party.device_id, why))
        if len(out) >= limit:
            break
    return out
