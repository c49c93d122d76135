"""Who may see what, and why: roles, purposes, the fields each purpose may read, and whose data
an organisation's staff may read at all.

The policy is data, so a regulator can read it and a test can walk it. A principal holds a role
and a set of purposes; each request that reads personal data names one of those purposes, and
the answer carries only that purpose's fields. Purposes follow purpose limitation (GDPR art.
5(1)(b), India's DPDP Act 2023 s.4-7): billing sees what a bill needs and nothing else.

**Whose data.** A staff credential without an organisation (admins, auditors, regulators,
analysts, and an operator of a whole domain) is platform-wide: its purposes reach every
resident. A credential that names an organisation (`org_id`: a provider's, a community asset's
or a charging operator's staff) reaches only the residents the organisation has the
relationship with that the purpose needs (`PURPOSE_RELATIONSHIPS`):

- billing: the provider's customers (chosen now or before, billed by it, or the default
  provider of one who never chose) and the community asset's shareholders (now or before);
- grid operations: the provider's customers;
- every other purpose: nobody (those reads stay with platform roles).

A charging operator is related to no resident through its chargers: a vehicle that charged
there opens none of its owner's data (profile, home meters awaiting review, wallets). The
operator's relationship is with its own sessions, which it reads with the vehicle as the
operator's own pseudonym (`charging.handlers.operator_sessions`), so that no organisation can
track a vehicle, or its owner, across the city (DESIGN §3).

A ledger read by such staff reaches the organisation's own accounts and its related residents'
accounts; a transfer names two accounts, so it is readable when one of them is, and neither is
the account of a resident the organisation is not related to (a payment from a customer to
someone else is that someone's business too). For the same reason a statement of an account
within reach names a line's counterparty account only where that line's transfer is readable:
an unrelated resident's account shows as null (a wallet id names its resident), and each
resident a statement names is recorded as read.

**Denials.** A credential that lacks the purpose, or names one the read does not serve, is
refused with 403 (`purpose_not_granted`, `wrong_purpose`): that says nothing about the resident.
A resident, account or transfer outside an organisation's reach answers 404 `not_related`, the
same answer whether or not it exists: a 403 there would tell a desk that probes VIDs or account
ids (which follow residents' numbers) who is enrolled and how many residents there are.

The decisions here are pure functions over what the caller says and what the service layer
looked up (`cityshare.identity.access`, which every door goes through and which records
each read).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from cityshare.identity.residents import owner_of, resident_of

if TYPE_CHECKING:
    from cityshare.identity.tokens import Principal


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


# -- whose data: an organisation's relationships with residents --------------------------------


class Relationship(StrEnum):
    """How an organisation is related to a resident (looked up by the service layer)."""

    #: The organisation sells (or sold) them energy: chosen as their provider now or before,
    #: billed them, or is the default provider of a resident who never chose.
    CUSTOMER = "customer"
    #: They hold, or held, shares of the organisation (a community asset).
    SHAREHOLDER = "shareholder"


R = Relationship

#: Through which relationships an organisation's staff may read a resident for each purpose.
#: A purpose missing here reaches nobody through an organisation: only platform roles.
PURPOSE_RELATIONSHIPS: dict[Purpose, frozenset[Relationship]] = {
    P.BILLING: frozenset({R.CUSTOMER, R.SHAREHOLDER}),
    P.GRID_OPERATIONS: frozenset({R.CUSTOMER}),
}


class Read(StrEnum):
    """The reads of a resident's personal data by someone else, one per kind of answer."""

    PROFILE = "profile"  # GET /residents/{vid}: the purpose's fields
    STATEMENT = "energy statement"  # a resident's monthly energy statement
    ACCOUNTS = "accounts"  # ledger: a resident's account, its statement, a transfer
    HOLDERS = "holders"  # a community asset's shareholders by VID
    LOG_ENTRIES = "log entries"  # audit-log entries that name residents
    REVIEW = "meters awaiting review"  # anomalous intervals of residents' meters


#: The purposes each read serves. A profile answers any purpose (cut to its fields); accounts
#: are wallets, which only billing and audit see.
READ_PURPOSES: dict[Read, frozenset[Purpose]] = {
    Read.PROFILE: frozenset(P),
    Read.STATEMENT: frozenset({P.BILLING}),
    Read.ACCOUNTS: frozenset(p for p, fields in PURPOSE_FIELDS.items() if F.WALLETS in fields),
    Read.HOLDERS: frozenset({P.BILLING}),
    Read.LOG_ENTRIES: frozenset({P.AUDIT}),
    Read.REVIEW: frozenset({P.GRID_OPERATIONS}),
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a read is refused: 403 for the credential itself, 404 for what is out of reach."""

    status: int
    code: str
    message: str


#: How a denial names the residents an organisation reaches through each relationship.
_REACH = {R.CUSTOMER: "its customers", R.SHAREHOLDER: "its shareholders"}


def _not_related(principal: Principal, purpose: Purpose, what: str) -> Refusal:
    through = PURPOSE_RELATIONSHIPS.get(purpose, frozenset())
    reach = " and ".join(_REACH[r] for r in R if r in through) or "nobody (platform roles only)"
    return Refusal(
        404,
        "not_related",
        f"{what} is not within reach of organisation {principal.org_id}: for {purpose} its "
        f"staff read {reach}",
    )


def refuse_read(
    principal: Principal,
    read: Read,
    purpose: Purpose,
    related: Iterable[Collection[Relationship]] = (),
    *,
    what: str = "this resident",
) -> Refusal | None:
    """Why `principal` may not make `read` for `purpose` of residents the principal's
    organisation has `related` relationships with (one collection per resident; empty for a
    resident that does not exist), or None when it may.

    Platform-wide credentials (no organisation) are judged on the purpose alone."""
    if purpose not in principal.purposes:
        granted = ", ".join(sorted(principal.purposes)) or "none"
        return Refusal(
            403, "purpose_not_granted", f"your credential grants these purposes: {granted}"
        )
    if principal.role not in STAFF_ROLES:  # residents and devices hold no purposes anyway
        return Refusal(403, "forbidden", "reading another resident's data is for staff")
    serves = READ_PURPOSES[read]
    if purpose not in serves:
        return Refusal(
            403, "wrong_purpose", f"this read ({read}) serves: {', '.join(sorted(serves))}"
        )
    if principal.org_id is None:
        return None
    through = PURPOSE_RELATIONSHIPS.get(purpose, frozenset())
    if any(not (frozenset(r) & through) for r in related):
        return _not_related(principal, purpose, what)
    return None


def refuse_ledger_read(
    principal: Principal,
    purpose: Purpose,
    owners: Collection[str | None],
    related: Mapping[int, Collection[Relationship]],
    *,
    what: str,
) -> Refusal | None:
    """Why `principal` may not read ledger data naming accounts of these `owners` (one account
    for an account or its statement, two for a transfer; none when it does not exist), or None.

    Residents' accounts are personal data (`refuse_read` of `Read.ACCOUNTS`, `related` per
    resident). An organisation's staff read only what names their own organisation's
    account or a related resident's, and nothing naming an unrelated resident's. For them
    the reach is judged first: whether a purpose is asked of them depends on whose accounts
    these are, so a 403 before the reach would tell a resident's account from a missing one."""
    residents = [r for r in (resident_of(o) for o in owners) if r is not None]
    if principal.org_id is not None:
        through = PURPOSE_RELATIONSHIPS.get(purpose, frozenset())
        mine = owner_of(principal.org_id) in owners
        if not (residents or mine) or any(
            not (frozenset(related.get(r, ())) & through) for r in residents
        ):
            return _not_related(principal, purpose, what)
    if not residents:
        return None
    return refuse_read(
        principal, Read.ACCOUNTS, purpose, [related.get(r, ()) for r in residents], what=what
    )


def refuse_account_search(principal: Principal, owner: str | None) -> Refusal | None:
    """An organisation's staff search the accounts of one owner at a time (theirs or a related
    resident's, judged by `refuse_ledger_read`), never the whole ledger."""
    if principal.org_id is not None and owner is None:
        return Refusal(
            403,
            "owner_required",
            f"an organisation's staff list the accounts of one owner: {owner_of(principal.org_id)}"
            " or resident:<n> of a resident related to it",
        )
    return None
