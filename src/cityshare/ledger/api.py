"""Ledger operations under /api/v1: accounts, transfers, statements, expiry, invariants."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query

from cityshare.api.deps import LedgerWriterDep, OperatorDep, PlatformDep, PrincipalDep
from cityshare.api.errors import ApiError
from cityshare.api.responses import ItemResult, error_responses
from cityshare.identity.access import ReadRefused
from cityshare.identity.access_api import read_refused
from cityshare.identity.policy import Purpose
from cityshare.ledger import commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import MAX_INT, CreateAccountResult, Ledger
from cityshare.ledger.schemas import (
    AccountIn,
    AccountOut,
    BatchResponse,
    ExpiredOut,
    InvariantsOut,
    LedgerName,
    StatementOut,
    TransferIn,
    TransferOut,
)

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
    "a resident's; it must be a purpose your credential grants that sees wallets (billing, "
    "audit). An organisation's staff read only its own accounts and those of residents "
    "related to it (404 `not_related` otherwise; see `cityshare.identity.policy`).",
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
    owner: Annotated[
        str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    ] = None,
    ledger: LedgerName | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    purpose: Purpose = READ_PURPOSE,
) -> list[AccountOut]:
    try:
        found = platform.personal_data.accounts(
            principal, purpose, owner=owner, ledger=Ledger[ledger] if ledger else None, limit=limit
        )
    except ReadRefused as exc:
        raise read_refused(exc) from exc
    return [AccountOut.of(a) for a in found]


@router.get("/accounts/{account_id}", response_model=AccountOut, summary="Look up an account")
def get_account(
    platform: PlatformDep,
    principal: PrincipalDep,
    account_id: PathId,
    purpose: Purpose = READ_PURPOSE,
) -> AccountOut:
    try:
        return AccountOut.of(platform.personal_data.account(principal, account_id, purpose))
    except ReadRefused as exc:
        raise read_refused(exc) from exc


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
    try:
        result = platform.personal_data.account_statement(
            principal, account_id, purpose, after=after, limit=limit
        )
    except ReadRefused as exc:
        raise read_refused(exc) from exc
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
    try:
        view = platform.personal_data.transfer(principal, transfer_id, purpose)
    except ReadRefused as exc:
        raise read_refused(exc) from exc
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
