"""Reads of a resident's personal data by someone else, whichever door they come through.

Every door that shows one resident's data to another party (the HTTP API, the `cityshare`
CLI, a future portal) calls one of the queries here, never the capability's query directly.
Each query does the same three things in the same order:

1. it asks the access policy (`cityshare.identity.policy`, pure) whether this principal may make
   this read for this purpose, after looking up the organisation's relationships with the
   residents concerned when the credential names an organisation;
2. it reads the data;
3. it records the read (who, in what role, for what purpose, what; the time is the record's)
   in each resident's access log and in the audit log, before the data is returned: if the
   record cannot be written, the caller gets an error instead of the data.

A resident reading their own data is not recorded (the access log shows who *else* looked).
A refused read raises `ReadRefused` (403 for the credential, 404 for what is out of reach;
see the policy's docstring) and records nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace

from cityshare.billing import queries as billing
from cityshare.billing.model import BillingError, month_of
from cityshare.community import queries as community
from cityshare.energy import queries as energy
from cityshare.energy.tariff import Tariff
from cityshare.identity import commands
from cityshare.identity import handlers as identity
from cityshare.identity.organisations import is_organisation
from cityshare.identity.policy import (
    PURPOSE_FIELDS,
    PURPOSE_RELATIONSHIPS,
    Purpose,
    Read,
    Refusal,
    Relationship,
    ResidentField,
    Role,
    refuse_account_search,
    refuse_ledger_read,
    refuse_read,
)
from cityshare.identity.residents import resident_of
from cityshare.identity.tokens import Principal
from cityshare.identity.uow import IdentityUnitOfWork
from cityshare.kernel.bus import MessageBus
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import AccountState
from cityshare.tlog import handlers as audit_log


class ReadRefused(Exception):  # noqa: N818 (a verdict, not a fault: named as one)
    """A read the access policy refuses; `status` 403 or 404, `code` stable, message why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.status = refusal.status
        self.code = refusal.code


def _allow(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise ReadRefused(refusal)


def _not_found(code: str, message: str) -> ReadRefused:
    return ReadRefused(Refusal(404, code, message))


def relationships(
    uow: IdentityUnitOfWork,
    org_id: int,
    resident_ids: Collection[int],
    *,
    default_provider: int | None,
) -> dict[int, frozenset[Relationship]]:
    """How organisation `org_id` is related to each of `resident_ids` (see `Relationship`)."""
    ids = set(resident_ids)
    if not ids:
        return {}
    found: dict[int, set[Relationship]] = {r: set() for r in ids}
    with uow:
        customers = uow.billing.customers_among(org_id, ids)
        try:
            default = billing.default_provider(uow, default_provider)
        except BillingError:  # a misconfigured default reaches nobody (billing says why)
            default = None
        if default == org_id:
            now_s = uow.clock.now_ns() // 1_000_000_000
            choices = uow.billing.choices_of(ids)
            chosen = {c.resident_id for c in choices if c.effective_from <= now_s}
            customers |= ids - chosen
        holders = uow.community.holders_among(org_id, ids)
    for kind, members in ((Relationship.CUSTOMER, customers), (Relationship.SHAREHOLDER, holders)):
        for r in members:
            found[r].add(kind)
    return {r: frozenset(kinds) for r, kinds in found.items()}


def shell_principal(user: str, purpose: Purpose) -> Principal:
    """The operator at a shell on the platform's host (the `cityshare` CLI): whoever can open
    the database is platform-wide already, so they read as an administrator named
    `cli:<login name>`, for the one purpose they gave."""
    return Principal(f"cli:{user}", Role.ADMIN, frozenset({purpose}))


@dataclass(frozen=True, slots=True)
class PersonalData:
    """The queries of residents' personal data, each checked and recorded (module docstring)."""

    uow: Callable[[], IdentityUnitOfWork]
    bus: MessageBus
    tariff: Tariff
    #: CITYSHARE_DEFAULT_PROVIDER: the provider of residents who never chose one.
    default_provider: int | None

    # -- the rule, once ---------------------------------------------------------------------

    def related(
        self, principal: Principal, resident_ids: Iterable[int | None]
    ) -> dict[int, frozenset[Relationship]]:
        """The principal's organisation's relationships with these residents ({} for a
        platform-wide credential, which the policy does not scope)."""
        if principal.org_id is None:
            return {}
        ids = {r for r in resident_ids if r is not None}
        return relationships(
            self.uow(), principal.org_id, ids, default_provider=self.default_provider
        )

    def check(
        self,
        principal: Principal,
        read: Read,
        purpose: Purpose,
        resident_ids: list[int | None],
        *,
        what: str = "this resident",
    ) -> None:
        """Refuse (ReadRefused) unless the policy lets `principal` make `read` of these
        residents for `purpose` (None: a resident that does not exist, related to nobody)."""
        related = self.related(principal, resident_ids)
        _allow(
            refuse_read(
                principal,
                read,
                purpose,
                [related.get(r, frozenset()) if r is not None else () for r in resident_ids],
                what=what,
            )
        )

    def record(
        self, principal: Principal, purpose: Purpose, reads: Iterable[tuple[int, str]]
    ) -> None:
        """Record (resident id, what was read) pairs; a resident's reads of themself are not."""
        others = [
            (resident_id, what)
            for resident_id, what in reads
            if not (principal.role == Role.RESIDENT and principal.resident_id == resident_id)
        ]
        if not others:
            return
        self.bus.handle(
            commands.RecordAccess(
                [
                    commands.AccessRequest(rid, principal.name, principal.role, purpose, what)
                    for rid, what in dict.fromkeys(others)
                ]
            )
        )

    # -- identity -------------------------------------------------------------------------

    def profile(
        self, principal: Principal, vid: str, purpose: Purpose
    ) -> identity.ResidentData:
        """A resident by VID, for `purpose` (the door shows only that purpose's fields)."""
        resident_id = identity.resident_by_vid(self.uow(), vid)
        self.check(principal, Read.PROFILE, purpose, [resident_id])
        data = identity.resident_data(self.uow(), resident_id) if resident_id else None
        if data is None:
            raise _not_found("not_found", "no resident has this virtual id")
        attrs = data.enrolment.attrs
        shown = [
            f.value
            for f in sorted(PURPOSE_FIELDS[purpose])
            if not (f in (ResidentField.WARD, ResidentField.AGE_BAND) and attrs.get(f) is None)
        ]
        self.record(principal, purpose, [(data.resident.id, f"profile: {', '.join(shown)}")])
        return data

    # -- billing --------------------------------------------------------------------------

    def energy_statement(
        self, principal: Principal, vid: str, month: str, purpose: Purpose
    ) -> billing.MonthlyStatement:
        """A resident's monthly energy statement (month `YYYY-MM`; BillingError if invalid)."""
        resident_id = identity.resident_by_vid(self.uow(), vid)
        self.check(principal, Read.STATEMENT, purpose, [resident_id])
        if resident_id is None:
            raise _not_found("not_found", "no resident has this virtual id")
        period = month_of(month, self.tariff.zone)
        found = billing.monthly_statement(self.uow(), resident_id, period, tariff=self.tariff)
        self.record(principal, purpose, [(resident_id, f"energy statement {month}")])
        return found

    # -- ledger ---------------------------------------------------------------------------

    def _check_ledger(
        self, principal: Principal, purpose: Purpose, owners: list[str | None], what: str
    ) -> None:
        related = self.related(principal, (resident_of(o) for o in owners))
        _allow(refuse_ledger_read(principal, purpose, owners, related, what=what))

    def _record_accounts(
        self, principal: Principal, purpose: Purpose, reads: Iterable[tuple[str | None, str]]
    ) -> None:
        resident_reads = [(resident_of(owner), what) for owner, what in reads]
        self.record(principal, purpose, [(r, what) for r, what in resident_reads if r])

    def account(
        self, principal: Principal, account_id: int, purpose: Purpose
    ) -> AccountState:
        found = ledger_service.get_account(self.uow(), account_id)
        owners = [found.owner] if found is not None else []
        self._check_ledger(principal, purpose, owners, f"account {account_id}")
        if found is None:
            raise _not_found("account_not_found", f"no account {account_id}")
        self._record_accounts(principal, purpose, [(found.owner, f"account {account_id}")])
        return found

    def accounts(
        self,
        principal: Principal,
        purpose: Purpose,
        *,
        owner: str | None,
        ledger: int | None,
        limit: int,
    ) -> list[AccountState]:
        """Accounts by owner and ledger; an organisation's staff must name the owner."""
        _allow(refuse_account_search(principal, owner))
        if owner is not None:
            self._check_ledger(principal, purpose, [owner], f"the accounts of {owner}")
        found = ledger_service.find_accounts(self.uow(), owner=owner, ledger=ledger, limit=limit)
        if owner is None:  # platform-wide (refuse_account_search): the purpose is checked here
            self._check_ledger(principal, purpose, [a.owner for a in found], "an account found")
        self._record_accounts(principal, purpose, [(a.owner, f"account {a.id}") for a in found])
        return found

    def account_statement(
        self, principal: Principal, account_id: int, purpose: Purpose, *, after: int, limit: int
    ) -> ledger_service.Statement:
        """An account's statement, a page of it. Each line names its counterparty account, and
        a resident's wallet id names the resident: so an organisation's staff see the
        counterparty only where it is not the account of a resident unrelated to the
        organisation for the purpose (None there, as `transfer` of that line is refused), and
        every resident named, the account's owner and each counterparty's, is recorded as
        read (platform-wide staff see every counterparty). One owner lookup per page."""
        account = ledger_service.get_account(self.uow(), account_id)
        owners = [account.owner] if account is not None else []
        self._check_ledger(principal, purpose, owners, f"account {account_id}")
        found = ledger_service.statement(self.uow(), account_id, after=after, limit=limit)
        if found is None:
            raise _not_found("account_not_found", f"no account {account_id}")
        others = sorted({x.counterparty for x in found.lines if x.counterparty is not None})
        owned = zip(others, ledger_service.account_owners(self.uow(), others), strict=True)
        residents = {a: r for a, r in ((a, resident_of(o)) for a, o in owned) if r is not None}
        hidden: set[int] = set()
        if principal.org_id is not None:
            related = self.related(principal, residents.values())
            through = PURPOSE_RELATIONSHIPS.get(purpose, frozenset())
            hidden = {a for a, r in residents.items() if not related.get(r, frozenset()) & through}
            found = replace(
                found,
                lines=[
                    replace(line, counterparty=None) if line.counterparty in hidden else line
                    for line in found.lines
                ],
            )
        owner = resident_of(found.account.owner)
        reads = [(owner, f"statement of account {account_id}")] if owner is not None else []
        named = f"counterparty in statement of account {account_id}"
        shown = sorted(r for a, r in residents.items() if a not in hidden and r != owner)
        reads += [(r, named) for r in shown]
        self.record(principal, purpose, reads)
        return found

    def transfer(
        self, principal: Principal, transfer_id: int, purpose: Purpose
    ) -> ledger_service.TransferView:
        view = ledger_service.get_transfer(self.uow(), transfer_id)
        owners: list[str | None] = []
        if view is not None:
            record = view.record
            owners = ledger_service.account_owners(
                self.uow(), [record.debit_account_id, record.credit_account_id]
            )
        self._check_ledger(principal, purpose, owners, f"transfer {transfer_id}")
        if view is None:
            raise _not_found("transfer_not_found", f"no transfer {transfer_id}")
        self._record_accounts(principal, purpose, [(o, f"transfer {transfer_id}") for o in owners])
        return view

    # -- community ------------------------------------------------------------------------

    def asset_holders(
        self, principal: Principal, asset_id: int, purpose: Purpose, *, offset: int, limit: int
    ) -> community.AssetShares:
        """A community asset's shares with a page of its holders by VID (CommunityError if it
        is not a community asset)."""
        _allow(refuse_read(principal, Read.HOLDERS, purpose))
        data = community.asset_shares(
            self.uow(), asset_id, with_holders=True, offset=offset, limit=limit
        )
        holders: list[int | None] = [r for r, _, _ in data.holdings]
        self.check(principal, Read.HOLDERS, purpose, holders, what=f"a holder of asset {asset_id}")
        what = f"community shares: holding of asset {asset_id}"
        self.record(principal, purpose, [(r, what) for r, _, _ in data.holdings])
        return data

    # -- energy ---------------------------------------------------------------------------

    def awaiting_review(
        self, principal: Principal, purpose: Purpose, *, after: int, limit: int
    ) -> list[energy.ReviewItem]:
        """Intervals awaiting review (`energy.awaiting_review`), oldest first after `after`.

        Platform-wide staff see every meter's; an organisation's staff see their own meters'
        and those of residents related to them for the purpose (a provider's customers; a
        charging operator's chargers relate it to nobody): the others are skipped, not
        refused, since a queue names many residents. Each resident named is recorded as read."""
        _allow(refuse_read(principal, Read.REVIEW, purpose))
        if principal.org_id is None:
            found = energy.awaiting_review(self.uow(), after_id=after, limit=limit)
        else:
            found = self._related_review(principal, purpose, after=after, limit=limit)
        residents = [i.owner_id for i in found if not is_organisation(i.owner_id)]
        self.record(principal, purpose, [(r, "meters awaiting review") for r in residents])
        return found

    def _related_review(
        self, principal: Principal, purpose: Purpose, *, after: int, limit: int
    ) -> list[energy.ReviewItem]:
        # Pages of the whole queue, filtered, until `limit` are found: the queue is short
        # (an interval leaves it once a reading covers it), the relationships are per page.
        through = PURPOSE_RELATIONSHIPS.get(purpose, frozenset())
        found: list[energy.ReviewItem] = []
        while len(found) < limit:
            page = energy.awaiting_review(self.uow(), after_id=after, limit=limit)
            if not page:
                break
            owners = [i.owner_id for i in page if not is_organisation(i.owner_id)]
            related = self.related(principal, owners)
            for item in page:
                mine = item.owner_id == principal.org_id
                if mine or related.get(item.owner_id, frozenset()) & through:
                    found.append(item)
            after = page[-1].interval_id
        return found[:limit]

    # -- the audit log --------------------------------------------------------------------

    def log_entries(self, principal: Principal, start: int, end: int) -> list[bytes]:
        """Audit-log entries [start, end) (LogRangeError if out of range), for audit."""
        _allow(refuse_read(principal, Read.LOG_ENTRIES, Purpose.AUDIT))
        data = audit_log.entries(self.uow(), start, end)
        named: list[int | None] = list(audit_log.residents_named(data))
        stop = start + len(data)
        what = f"audit log entries {start}-{stop}"
        self.check(principal, Read.LOG_ENTRIES, Purpose.AUDIT, named, what=what)
        self.record(principal, Purpose.AUDIT, [(r, what) for r in named if r])
        return data
