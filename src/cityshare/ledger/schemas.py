"""Request and response bodies of the ledger API (pydantic v2, strict integers: no floats)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, model_validator
from pydantic_core import PydanticCustomError

from cityshare.api.responses import ItemResult, Strict
from cityshare.ledger.handlers import InvariantReport, Statement, StatementLine, TransferView
from cityshare.ledger.ids import (
    NAMED_ACCOUNT_MESSAGE,
    NAMED_PLATFORM_ACCOUNTS,
    PLATFORM_ID_BASE,
    RESERVED_ACCOUNT_MESSAGE,
    RESERVED_MESSAGE,
    reserved_account_id,
    reserved_transfer_id,
)
from cityshare.ledger.model import (
    MAX_INT,
    MAX_TIMEOUT,
    AccountFlags,
    AccountState,
    Ledger,
    NewAccount,
    PendingState,
    Transfer,
    TransferFlags,
    TransferRecord,
)

LedgerName = Literal["CREDIT", "ENERGY", "CARBON", "INR"]
AccountFlagName = Literal["debits_must_not_exceed_credits", "credits_must_not_exceed_debits"]
TransferFlagName = Literal["linked", "pending", "post_pending_transfer", "void_pending_transfer"]



def _refuse_reserved(reserved: Callable[[int], bool], message: str) -> BeforeValidator:
    """Answer `reserved_id` (not a bare bound violation) for an id the platform keeps: the API
    error names that code and the range a client may choose (api/errors.py)."""

    def check(value: object) -> object:
        if type(value) is int and value <= MAX_INT and reserved(value):
            raise PydanticCustomError("reserved_id", message)
        return value

    return BeforeValidator(check)


# The bound is exclusive (`lt`): FastAPI's OpenAPI model keeps bounds as floats, and 2^61 is
# exact as a float where 2^61-1 is not.
_CLIENT_RANGE = (
    "1 … 2^61-1; ids from 2^61 up are the platform's own and answer 422 `reserved_id`"
)
#: A transfer id (or a pending id) a client chooses.
TransferId = Annotated[
    StrictInt,
    Field(ge=1, lt=PLATFORM_ID_BASE, description=f"Client-chosen id, {_CLIENT_RANGE}."),
    _refuse_reserved(reserved_transfer_id, RESERVED_MESSAGE),
]
#: An account id a client chooses: the client range less the platform's named accounts.
AccountId = Annotated[
    StrictInt,
    Field(
        ge=1,
        lt=PLATFORM_ID_BASE,
        description=f"Client-chosen id, {_CLIENT_RANGE}, as do the platform's accounts "
        f"{sorted(NAMED_PLATFORM_ACCOUNTS)}.",
    ),
    _refuse_reserved(reserved_account_id, RESERVED_ACCOUNT_MESSAGE),
]
#: An account a client's transfer debits or credits: any (a resident's wallet too) but the
#: platform's named accounts, which only the platform's own postings move.
TransferAccountRef = Annotated[
    StrictInt,
    Field(
        ge=0,
        le=MAX_INT,
        description=f"Any account but the platform's {sorted(NAMED_PLATFORM_ACCOUNTS)} "
        "(422 `reserved_id`).",
    ),
    _refuse_reserved(NAMED_PLATFORM_ACCOUNTS.__contains__, NAMED_ACCOUNT_MESSAGE),
]
PendingRef = Annotated[
    StrictInt,
    Field(
        ge=0,
        lt=PLATFORM_ID_BASE,
        description="The pending transfer to post or void (0 otherwise): one a client made, "
        f"so {_CLIENT_RANGE}.",
    ),
    _refuse_reserved(reserved_transfer_id, RESERVED_MESSAGE),
]
Amount = Annotated[StrictInt, Field(ge=0, le=MAX_INT)]
Code = Annotated[StrictInt, Field(ge=0, le=0xFFFF, description="What kind of account/transfer.")]
UserData = Annotated[StrictInt, Field(ge=-MAX_INT - 1, le=MAX_INT)]


class AccountIn(Strict):
    id: AccountId
    ledger: LedgerName
    code: Code = 0
    flags: list[AccountFlagName] = Field(default_factory=list, max_length=2)
    owner: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    user_data: UserData = 0

    def to_domain(self) -> NewAccount:
        flags = 0
        for name in self.flags:
            flags |= AccountFlags[name.upper()]
        return NewAccount(
            self.id, Ledger[self.ledger], self.code, flags, self.owner, self.user_data
        )


#: A transfer that resolves a pending one (post or void) names it; any other moves an amount.
_RESOLVING = frozenset({"post_pending_transfer", "void_pending_transfer"})


class TransferIn(Strict):
    """One transfer. For `post_pending_transfer` / `void_pending_transfer`, `pending_id` names
    the hold; account ids, ledger and amount may be omitted (amount omitted posts it all).
    Any other transfer needs both accounts, the ledger and a positive amount: the schema says
    so (`anyOf`) as `_amount_and_accounts` checks it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["flags"],
                    "properties": {
                        "flags": {
                            "contains": {"enum": ["post_pending_transfer", "void_pending_transfer"]}
                        }
                    },
                },
                {
                    "required": ["debit_account_id", "credit_account_id", "amount", "ledger"],
                    "properties": {
                        "debit_account_id": {"minimum": 1},
                        "credit_account_id": {"minimum": 1},
                        "amount": {"minimum": 1},
                        "ledger": {"type": "string"},
                    },
                },
            ]
        },
    )

    id: TransferId
    debit_account_id: TransferAccountRef = 0
    credit_account_id: TransferAccountRef = 0
    amount: Amount = Field(0, description="In the ledger's minor unit; > 0 except for post/void.")
    ledger: LedgerName | None = None
    code: Code = 0
    flags: list[TransferFlagName] = Field(default_factory=list, max_length=4)
    pending_id: PendingRef = 0
    timeout: Annotated[StrictInt, Field(ge=0, le=MAX_TIMEOUT)] = Field(
        0, description="Seconds until a pending transfer expires; 0 = never."
    )
    user_data: UserData = 0

    @model_validator(mode="after")
    def _amount_and_accounts(self) -> TransferIn:
        resolving = _RESOLVING & set(self.flags)
        if not resolving:
            if self.amount <= 0:
                raise ValueError("amount must be a positive integer")
            if self.debit_account_id == 0 or self.credit_account_id == 0:
                raise ValueError("debit_account_id and credit_account_id are required")
            if self.ledger is None:
                raise ValueError("ledger is required")
        return self

    def to_domain(self) -> Transfer:
        flags = 0
        for name in self.flags:
            flags |= TransferFlags[name.upper()]
        return Transfer(
            self.id,
            self.debit_account_id,
            self.credit_account_id,
            self.amount,
            Ledger[self.ledger] if self.ledger else 0,
            self.code,
            flags,
            self.pending_id,
            self.timeout,
            self.user_data,
        )


def _account_flag_names(flags: int) -> list[str]:
    return [f.name.lower() for f in AccountFlags if f.value and flags & f.value and f.name]


def _transfer_flag_names(flags: int) -> list[str]:
    return [f.name.lower() for f in TransferFlags if f.value and flags & f.value and f.name]


class AccountOut(BaseModel):
    id: int
    ledger: LedgerName
    unit: str
    code: int
    flags: list[str]
    owner: str | None
    user_data: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    balance: int = Field(description="credits_posted - debits_posted")
    available: int = Field(description="balance - debits_pending: what can still be spent")
    timestamp: int

    @classmethod
    def of(cls, a: AccountState) -> AccountOut:
        ledger = Ledger(a.ledger)
        return cls(
            id=a.id,
            ledger=ledger.name,
            unit=ledger.unit,
            code=a.code,
            flags=_account_flag_names(a.flags),
            owner=a.owner,
            user_data=a.user_data,
            debits_pending=a.debits_pending,
            debits_posted=a.debits_posted,
            credits_pending=a.credits_pending,
            credits_posted=a.credits_posted,
            balance=a.balance,
            available=a.available,
            timestamp=a.timestamp,
        )


class TransferOut(BaseModel):
    id: int
    debit_account_id: int
    credit_account_id: int
    amount: int
    ledger: LedgerName
    code: int
    flags: list[str]
    pending_id: int
    timeout: int
    user_data: int
    timestamp: int
    pending_state: Literal["pending", "posted", "voided", "expired"] | None = None
    expires_at: int | None = None
    resolved_by: int | None = None

    @classmethod
    def of(cls, view: TransferView) -> TransferOut:
        r: TransferRecord = view.record
        state = view.pending_state
        return cls(
            id=r.id,
            debit_account_id=r.debit_account_id,
            credit_account_id=r.credit_account_id,
            amount=r.amount,
            ledger=Ledger(r.ledger).name,
            code=r.code,
            flags=_transfer_flag_names(r.flags),
            pending_id=r.pending_id,
            timeout=r.timeout,
            user_data=r.user_data,
            timestamp=r.timestamp,
            pending_state=PendingState(state).name.lower() if state else None,
            expires_at=(view.expires_at or None) if state else None,
            resolved_by=(view.resolved_by or None) if state else None,
        )


class BatchResponse(BaseModel):
    created: int
    results: list[ItemResult]


class StatementLineOut(BaseModel):
    transfer_id: int
    timestamp: int
    kind: Literal["transfer", "pending", "post", "void"]
    direction: Literal["debit", "credit"]
    counterparty: int | None = Field(
        description="The transfer's other account; null when it is the account of a resident "
        "the reader's organisation is not related to for the purpose (whom a wallet id names)."
    )
    amount: int
    change: int
    balance: int
    code: int
    user_data: int

    @classmethod
    def of(cls, line: StatementLine) -> StatementLineOut:
        return cls.model_validate(line, from_attributes=True)


class StatementOut(BaseModel):
    account: AccountOut
    lines: list[StatementLineOut]
    next_after: int | None = Field(
        None, description="Pass as `after` for the next page; null on the last page."
    )

    @classmethod
    def of(cls, s: Statement) -> StatementOut:
        return cls(
            account=AccountOut.of(s.account),
            lines=[StatementLineOut.of(line) for line in s.lines],
            next_after=s.next_after,
        )


class InvariantsOut(BaseModel):
    ok: bool
    accounts_checked: int
    ledgers: list[dict[str, int | str]]
    problems: list[str]

    @classmethod
    def of(cls, r: InvariantReport) -> InvariantsOut:
        return cls(
            ok=r.ok, accounts_checked=r.accounts_checked, ledgers=r.ledgers, problems=r.problems
        )


class ExpiredOut(BaseModel):
    expired: int
