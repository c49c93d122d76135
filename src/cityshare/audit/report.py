"""The audit report: the problems `cityshare audit verify` found and what it checked."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that is wrong: the table, the row's key and, if it has one, its leaf index.

    `message` is a whole sentence that already names all three, ready to print.
    """

    table: str
    key: int | str | None
    leaf: int | None
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(slots=True)
class AuditReport:
    problems: list[Problem] = field(default_factory=list)
    #: Problems found beyond `max_problems` (counted, not kept).
    omitted: int = 0
    leaves: int = 0
    #: Stored `log_nodes` rows compared with their recomputed hash.
    nodes: int = 0
    checkpoints: int = 0
    cosignatures: int = 0
    #: Cosignature lines of witnesses whose key was not given (only parsed, not verified).
    cosignatures_unchecked: int = 0
    #: Rows of sealed tables whose seal was checked with the seal key.
    seals: int = 0
    #: Rows of sealed tables not checked, because no seal key was given.
    seals_unchecked: int = 0
    #: Per table, the rows matched with their leaf (accounts, transfers, pending_transfers, …).
    records: dict[str, int] = field(default_factory=dict)
    #: Accounts whose four balances were recomputed from the transfers.
    accounts: int = 0
    pending_transfers: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and not self.omitted

    @property
    def problem_count(self) -> int:
        return len(self.problems) + self.omitted

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": {
                "leaves": self.leaves,
                "nodes": self.nodes,
                "checkpoints": self.checkpoints,
                "cosignatures": self.cosignatures,
                "cosignatures_unchecked": self.cosignatures_unchecked,
                "seals": self.seals,
                "seals_unchecked": self.seals_unchecked,
                "records": dict(self.records),
                "accounts": self.accounts,
                "pending_transfers": self.pending_transfers,
            },
            "problem_count": self.problem_count,
            "problems": [
                {"table": p.table, "key": p.key, "leaf": p.leaf, "message": p.message}
                for p in self.problems
            ],
        }


#: Record a problem: (table, key, leaf, message), as :meth:`Recorder.__call__` takes it.
ProblemSink = Callable[[str, int | str | None, int | None, str], None]


class Recorder:
    """Keeps the first `max_problems` problems in `report` and counts the others."""

    def __init__(self, report: AuditReport, max_problems: int) -> None:
        self.report = report
        self.max_problems = max_problems

    def __call__(self, table: str, key: int | str | None, leaf: int | None, message: str) -> None:
        if len(self.report.problems) < self.max_problems:
            self.report.problems.append(Problem(table, key, leaf, message))
        else:
            self.report.omitted += 1
