"""Organisations: the parties besides residents that own devices and hold wallets.

- an **operator** runs assets of a domain for the public (charging stations, car parks,
  transit fleets); its chargers are its devices and it sees vehicles only by pseudonym;
- a **provider** sells energy to residents (the utility, or an energy-as-a-service provider
  using the existing line) and is paid from their wallets;
- a **community** asset (a shared solar array or battery) earns from its own meter and is
  owned by residents holding shares.

Residents and organisations are both *parties*: they share one id space, so every party
owns devices and holds one wallet per ledger the same way (`identity.residents`). Residents are
numbered from 1 and organisations from `ORG_ID_BASE`, so a number alone says which it is.
"""

from __future__ import annotations

import re
from enum import StrEnum

from cityshare.identity.residents import MAX_PARTY_ID, ORG_ID_BASE

__all__ = ["MAX_PARTY_ID", "NAME_RE", "ORG_ID_BASE", "OrgKind", "is_organisation"]


class OrgKind(StrEnum):
    OPERATOR = "operator"
    PROVIDER = "provider"
    COMMUNITY = "community"


#: Shown to residents and in statements; letters, digits, spaces and common punctuation.
NAME_RE = re.compile(r"^[\w][\w .,&'()/-]{0,99}$")


def is_organisation(party_id: int) -> bool:
    return ORG_ID_BASE <= party_id <= MAX_PARTY_ID
