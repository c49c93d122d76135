"""Ledger operations under /api/v1: accounts, transfers, statements, expiry, invariants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from cityshare.access.policy import Purpose
from cityshare.access.tokens import Principal
from cityshare.api.access import record_reads
from cityshare.api.deps import LedgerWriterDep, OperatorDep, PlatformDep, PrincipalDep
from cityshare.api.errors import ApiError
from cityshare.api.schemas import (
    AccountIn,
    AccountOut,
    BatchResponse,
    ExpiredOut,
    InvariantsOut,
    ItemResult,
    LedgerName,
    StatementOut,
    TransferIn,
    TransferOut,
    error_responses,
)
from cityshare.domain import commands
from cityshare.domain.ledger import MAX_INT, CreateAccountResult, Ledger
from cityshare.domain.residents import resident_of
from cityshare.services import ledger as ledger_service

router = APIRouter(
    prefix="/api/v1",
    tags=["ledger"],
    dependencies=[OperatorDep],
    responses=error_responses(400, 401, 403, 404, 413, 422, 503),
)

PathId = Annotated[int, Path(ge=1, le=MAX_INT)]
ATOMIC = Query(
    True,
    description="All or nothing (default): if any item fails, nothing is written and the "
    "answer is 422. With false, each item (or linked chain) stands alone and the answer "
    "lists every item's result.",
)
READ_PURPOSE = Query(
    Purpose.BILLING,
    description="Why you read: recorded in the resident's access log when the account is "
    "a resident's, and it must be a purpose your credential grants.",
)


#: A batch has at least one item (`_check_batch_size` answers 422 `empty_batch` otherwise).
NON_EMPTY = Body(json_schema_extra={"minItems": 1})


def _check_batch_size(platform: PlatformDep, n: int) -> None:
    limit = platform.settings.max_batch
    if n == 0:
        raise ApiError(422, "empty_batch", "send at least one item")
    if n > limit:
        raise ApiError(413, "batch_too_large", f"{n} items sent; at most {limit} per request")


@router.post(
    "/accounts",
    response_model=BatchResponse,
    dependencies=[LedgerWriterDep],
    summary="Open accounts (idempotent by id)",
)
def create_accounts(
    platform: PlatformDep,
    accounts: Annotated[list[AccountIn], NON_EMPTY],
    atomic: bool = ATOMIC,
) -> BatchResponse:
    _check_batch_size(platform, len(accounts))
    results = platform.bus.handle(
        commands.CreateAccounts([a.to_domain() for a in accounts], atomic=atomic)
    )
    items = [
        ItemResult(index=i, id=a.id, result=r)
        for i, (a, r) in enumerate(zip(accounts, results, strict=True))
    ]
    failed = [item for item in items if item.result not in _ACCOUNT_OK]
    if failed and atomic:
        raise ApiError(
            422,
            "accounts_rejected",
            f"{len(failed)} of {len(items)} accounts rejected ({failed[0].result} at index "
            f"{failed[0].index}); nothing was written",
            results=[f.model_dump() for f in failed],
        )
    created = sum(1 for r in results if r is CreateAccountResult.CREATED)
    return BatchResponse(created=created, results=items)


_ACCOUNT_OK = {CreateAccountResult.CREATED.value, CreateAccountResult.EXISTS.value}


@router.get("/accounts", response_model=list[AccountOut], summary="Find accounts")
def find_accounts(
    platform: PlatformDep,
    principal: PrincipalDep,
    owner: Annotated[str | None, Query(max_length=64)] = None,
    ledger: LedgerName | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    purpose: Purpose = READ_PURPOSE,
) -> list[AccountOut]:
    found = ledger_service.find_accounts(
        platform.uow(), owner=owner, ledger=Ledger[ledger] if ledger else None, limit=limit
    )
    _record(platform, principal, purpose, [(a.owner, f"account {a.id}") for a in found])
    return [AccountOut.of(a) for a in found]


@router.get("/accounts/{account_id}", response_model=AccountOut, summary="Look up an account")
def get_account(
    platform: PlatformDep,
    principal: PrincipalDep,
    account_id: PathId,
    purpose: Purpose = READ_PURPOSE,
) -> AccountOut:
    account = ledger_service.get_account(platform.uow(), account_id)
    if account is None:
        raise ApiError(404, "account_not_found", f"no account {account_id}")
    _record(platform, principal, purpose, [(account.owner, f"account {account_id}")])
    return AccountOut.of(account)


def _record(
    platform: PlatformDep,
    principal: Principal,
    purpose: Purpose,
    reads: list[tuple[str | None, str]],
) -> None:
    """Accounts of residents are personal data: record the read (see api/access.py)."""
    resident_reads = [(resident_of(owner), what) for owner, what in reads]
    record_reads(platform, principal, purpose, [(rid, what) for rid, what in resident_reads if rid])


@router.get(
    "/accounts/{account_id}/statement",
    response_model=StatementOut,
    summary="An account's history with its running balance, oldest first, paged",
)
def get_statement(
    platform: PlatformDep,
    principal: PrincipalDep,
    account_id: PathId,
    after: Annotated[
        int, Query(ge=0, le=MAX_INT, description="Timestamp cursor from `next_after`.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    purpose: Purpose = READ_PURPOSE,
) -> StatementOut:
    result = ledger_service.statement(platform.uow(), account_id, after=after, limit=limit)
    if result is None:
        raise ApiError(404, "account_not_found", f"no account {account_id}")
    _record(
        platform, principal, purpose, [(result.account.owner, f"statement of account {account_id}")]
    )
    return StatementOut.of(result)


@router.post(
    "/transfers",
    response_model=BatchResponse,
    dependencies=[LedgerWriterDep],
    summary="Post transfers (idempotent by id; linked chains; two-phase)",
)
def create_transfers(
    platform: PlatformDep,
    transfers: Annotated[list[TransferIn], NON_EMPTY],
    atomic: bool = ATOMIC,
) -> BatchResponse:
    _check_batch_size(platform, len(transfers))
    outcome = platform.bus.handle(
        commands.CreateTransfers([t.to_domain() for t in transfers], atomic=atomic)
    )
    items = [
        ItemResult(index=i, id=t.id, result=r.value)
        for i, (t, r) in enumerate(zip(transfers, outcome.results, strict=True))
    ]
    if atomic and outcome.failed:
        failed = [items[i] for i, _ in outcome.failed]
        raise ApiError(
            422,
            "transfers_rejected",
            f"{len(failed)} of {len(items)} transfers rejected ({failed[0].result} at index "
            f"{failed[0].index}); nothing was written",
            results=[f.model_dump() for f in failed],
        )
    return BatchResponse(created=outcome.created, results=items)


@router.get("/transfers/{transfer_id}", response_model=TransferOut, summary="Look up a transfer")
def get_transfer(
    platform: PlatformDep,
    principal: PrincipalDep,
    transfer_id: PathId,
    purpose: Purpose = READ_PURPOSE,
) -> TransferOut:
    view = ledger_service.get_transfer(platform.uow(), transfer_id)
    if view is None:
        raise ApiError(404, "transfer_not_found", f"no transfer {transfer_id}")
    record = view.record
    owners = ledger_service.account_owners(
        platform.uow(), [record.debit_account_id, record.credit_account_id]
    )
    _record(platform, principal, purpose, [(o, f"transfer {transfer_id}") for o in owners])
    return TransferOut.of(view)


@router.post(
    "/ledger/expire",
    response_model=ExpiredOut,
    dependencies=[LedgerWriterDep],
    summary="Release pending transfers whose timeout has passed (serve also does this itself)",
)
def expire(platform: PlatformDep) -> ExpiredOut:
    return ExpiredOut(expired=platform.bus.handle(commands.ExpirePendingTransfers()))


@router.get(
    "/ledger/check",
    response_model=InvariantsOut,
    summary="Check the ledger's invariants and recompute every balance from the transfers",
)
def check(platform: PlatformDep) -> InvariantsOut:
    return InvariantsOut.of(ledger_service.check_invariants(platform.uow()))
