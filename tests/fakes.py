"""An in-memory unit of work for handler unit tests (no database), and the small fakes of the
ledger and the audit log every handler touches.

A test builds it with the capability's fake repositories under their names
(`FakeUnitOfWork(identity=FakeIdentityRepository())`, as `uow.identity`, …); the ledger and
the log are always there. Leaving `with uow:` without `commit` puts every repository, the ledger
and the log back as they were (a rollback), so a test can check that a refusal writes nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from types import TracebackType
from typing import Any

from cityshare.kernel.clock import ManualClock
from cityshare.ledger.model import AccountState, NewAccount


class FakeLedger:
    """The ledger's write lock and clock, and its accounts: what handlers of other capabilities
    use of it (opening a new party's wallets goes through `ledger.handlers.open_accounts`)."""

    def __init__(self) -> None:
        self.locks = 0
        self.last_timestamp = 0
        self.accounts: dict[int, AccountState] = {}

    def lock_ledger(self) -> int:
        self.locks += 1
        return self.last_timestamp

    def set_last_timestamp(self, timestamp: int) -> None:
        self.last_timestamp = timestamp

    def load_accounts(self, ids: Collection[int]) -> dict[int, AccountState]:
        return {i: self.accounts[i] for i in ids if i in self.accounts}

    def insert_accounts(self, new: Sequence[NewAccount], timestamp: int) -> None:
        for i, account in enumerate(new):
            if account.id in self.accounts:
                raise ValueError(f"account {account.id} exists")  # the primary key
            self.accounts[account.id] = AccountState(*account, 0, 0, 0, 0, timestamp + i)


class FakeLog:
    def __init__(self) -> None:
        self.leaves: list[bytes] = []

    def append(self, leaves: list[bytes]) -> None:
        self.leaves += leaves


class FakeUnitOfWork:
    """What handlers use of a unit of work: the repositories given, the ledger, the log and a
    manual clock; `commits` counts commits."""

    def __init__(self, **repositories: Any) -> None:
        self.ledger: Any = repositories.pop("ledger", None) or FakeLedger()
        self._repositories = {"ledger": self.ledger, **repositories}
        for name, repository in repositories.items():
            setattr(self, name, repository)
        self.log = FakeLog()
        self.clock = ManualClock()
        self.commits = 0
        self._saved: dict[str, dict[str, Any]] | None = None

    def _state(self) -> dict[str, Any]:
        return {"log": self.log, **self._repositories}

    def __enter__(self) -> FakeUnitOfWork:
        self._saved = {name: copy.deepcopy(vars(obj)) for name, obj in self._state().items()}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved is not None:  # not committed: roll back
            for name, obj in self._state().items():
                vars(obj).clear()
                vars(obj).update(self._saved[name])
        self._saved = None

    def commit(self) -> None:
        self.commits += 1
        self._saved = None
