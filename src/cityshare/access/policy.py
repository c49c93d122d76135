"""Who may see what, and why: roles, purposes, and the fields each purpose may read.

The policy is data, so a regulator can read it and a test can walk it. A principal holds a role
and a set of purposes; each request that reads personal data names one of those purposes, and
the answer carries only that purpose's fields. Purposes follow purpose limitation (GDPR art.
5(1)(b), India's DPDP Act 2023 s.4-7): billing sees what a bill needs and nothing else.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    RESIDENT = "resident"
    DEVICE = "device"
    OPERATOR = "operator"  # of one domain: energy, transit, parking or the platform itself
    ANALYST = "analyst"
    AUDITOR = "auditor"
    REGULATOR = "regulator"
    ADMIN = "admin"


class Purpose(StrEnum):
    BILLING = "billing"
    GRID_OPERATIONS = "grid_operations"
    TRANSIT_PLANNING = "transit_planning"
    ENFORCEMENT = "enforcement"
    RESEARCH = "research"
    AUDIT = "audit"


class Domain(StrEnum):
    PLATFORM = "platform"
    ENERGY = "energy"
    TRANSIT = "transit"
    PARKING = "parking"


class ResidentField(StrEnum):
    """The pieces of a resident's personal data an answer may carry."""

    VID = "vid"
    WARD = "ward"
    AGE_BAND = "age_band"
    ENROLLED_AT = "enrolled_at"
    WALLETS = "wallets"
    DEVICES = "devices"


F = ResidentField
P = Purpose

PURPOSE_FIELDS: dict[Purpose, frozenset[ResidentField]] = {
    P.BILLING: frozenset({F.VID, F.WALLETS}),
    P.GRID_OPERATIONS: frozenset({F.VID, F.WARD, F.DEVICES}),
    P.TRANSIT_PLANNING: frozenset({F.WARD, F.AGE_BAND}),
    P.ENFORCEMENT: frozenset({F.VID, F.DEVICES}),
    P.RESEARCH: frozenset({F.WARD, F.AGE_BAND}),
    P.AUDIT: frozenset(F),
}

#: Which device kinds a purpose that sees devices may see.
PURPOSE_DEVICE_KINDS: dict[Purpose, frozenset[str]] = {
    P.GRID_OPERATIONS: frozenset({"meter", "charger"}),
    P.ENFORCEMENT: frozenset({"vehicle", "parking_meter"}),
    P.AUDIT: frozenset({"meter", "charger", "vehicle", "parking_meter", "validator", "phone"}),
}

#: The purposes an operator of each domain may be granted.
DOMAIN_PURPOSES: dict[Domain, frozenset[Purpose]] = {
    Domain.PLATFORM: frozenset({P.BILLING}),
    Domain.ENERGY: frozenset({P.BILLING, P.GRID_OPERATIONS}),
    Domain.TRANSIT: frozenset({P.BILLING, P.TRANSIT_PLANNING}),
    Domain.PARKING: frozenset({P.BILLING, P.ENFORCEMENT}),
}

#: The purposes each staff role may be granted (operators: see DOMAIN_PURPOSES).
ROLE_PURPOSES: dict[Role, frozenset[Purpose]] = {
    Role.ANALYST: frozenset({P.RESEARCH}),
    Role.AUDITOR: frozenset({P.AUDIT}),
    Role.REGULATOR: frozenset({P.AUDIT, P.ENFORCEMENT}),
    Role.ADMIN: frozenset(P),
}

STAFF_ROLES = frozenset({Role.OPERATOR, Role.ANALYST, Role.AUDITOR, Role.REGULATOR, Role.ADMIN})


def grantable_purposes(role: Role, domain: Domain | None) -> frozenset[Purpose]:
    if role == Role.OPERATOR:
        return DOMAIN_PURPOSES[domain] if domain is not None else frozenset()
    return ROLE_PURPOSES.get(role, frozenset())


def check_grant(role: Role, domain: Domain | None, purposes: frozenset[Purpose]) -> str | None:
    """Why this combination may not be issued, or None when it may."""
    if role == Role.OPERATOR and domain is None:
        return "an operator belongs to a domain: platform, energy, transit or parking"
    if role != Role.OPERATOR and domain is not None:
        return "only operators have a domain"
    if role in (Role.RESIDENT, Role.DEVICE):
        return "residents and devices get credentials by enrolling or proving their key"
    extra = purposes - grantable_purposes(role, domain)
    if extra:
        return f"the {role} role cannot be granted {', '.join(sorted(extra))}"
    if not purposes:
        return "grant at least one purpose"
    return None
