"""Many writers race to spend from one wallet, on SQLite and PostgreSQL.

Eight threads start together (a barrier) and each sends about fifty transfers of 1..20 out of ONE
wallet holding 1,000, one at a time or in small batches (some all-or-nothing), resending some of
its earlier submissions with the same ids, and sending a few transfers that a neighbour thread
sends too. On SQLite the threads share one database file; on PostgreSQL each works on its own
pooled connection. Whatever the interleaving, the ledger must serialise them: the wallet never
overdraws, exactly what was answered `created` left it, and each id is posted at most once.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

from cityshare.bootstrap import Platform
from cityshare.ledger import commands
from cityshare.ledger import handlers as ledger_service
from cityshare.ledger.model import CreateTransferResult, Ledger, Transfer
from ledger_helpers import account, fund, open_accounts

pytestmark = pytest.mark.slow

R = CreateTransferResult
CREDIT = int(Ledger.CREDIT)
THREADS = 8
TRANSFERS_PER_THREAD = 50
FUNDS = 1_000
WALLET = 10
RECEIVERS = [100 + k for k in range(THREADS)]
#: Thread k also sends SHARED[k] and SHARED[k - 1], so each of these ids races in two threads.
SHARED = [Transfer(900_000 + k, WALLET, RECEIVERS[k], 1 + k, CREDIT) for k in range(THREADS)]
SEED = 20_240_601


@dataclass(frozen=True)
class Submission:
    transfers: tuple[Transfer, ...]
    atomic: bool

    def committed(self, results: list[R]) -> bool:
        """Whether the batch was written: always unless atomic, then only if none failed."""
        return not self.atomic or all(r in (R.CREATED, R.EXISTS) for r in results)


def plan(thread: int) -> list[Submission]:
    """One thread's submissions: its own transfers (unique ids), single or in batches of 2..4,
    some resent later with the same ids, and the two shared transfers."""
    rng = random.Random(SEED + thread)
    first_id = 1_000 * (thread + 1)
    own = [
        Transfer(first_id + i, WALLET, rng.choice(RECEIVERS), rng.randint(1, 20), CREDIT)
        for i in range(TRANSFERS_PER_THREAD)
    ]
    submissions: list[Submission] = []
    while own:
        size = rng.choice([1, 1, 1, 2, 3, 4])
        chunk, own = tuple(own[:size]), own[size:]
        submissions.append(Submission(chunk, atomic=size > 1 and rng.random() < 0.3))
        if rng.random() < 0.2:
            submissions.append(rng.choice(submissions))  # a retry: same ids, same fields
    for shared in (SHARED[thread], SHARED[thread - 1]):
        submissions.insert(rng.randrange(len(submissions) + 1), Submission((shared,), False))
    return submissions


def test_racing_writers_never_overdraw_one_wallet_nor_post_an_id_twice(
    platform: Platform,
) -> None:
    open_accounts(platform, [WALLET, *RECEIVERS])
    fund(platform, WALLET, FUNDS, transfer_id=1)
    plans = [plan(k) for k in range(THREADS)]
    start = threading.Barrier(THREADS)

    def send(submissions: list[Submission]) -> list[tuple[Submission, list[R]]]:
        start.wait(timeout=60)  # all threads begin together, so they really race
        answered = []
        for s in submissions:
            outcome = platform.bus.handle(commands.CreateTransfers(s.transfers, atomic=s.atomic))
            answered.append((s, list(outcome.results)))
        return answered

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(send, p) for p in plans]
        answered = [pair for f in futures for pair in f.result()]  # re-raises a thread's error

    sent: dict[int, Transfer] = {}
    created: Counter[int] = Counter()
    answers: dict[int, list[R]] = {}
    for submission, results in answered:
        assert len(results) == len(submission.transfers)
        for t, result in zip(submission.transfers, results, strict=True):
            sent[t.id] = t
            answers.setdefault(t.id, []).append(result)
            if result is R.CREATED and submission.committed(results):
                created[t.id] += 1
    uow = platform.uow

    # No id was posted twice, however often and from however many threads it was sent.
    assert [i for i, n in created.items() if n > 1] == []

    # Each answer is one the rules allow: the wallet running dry is the only way to fail.
    for transfer_id, results in answers.items():
        assert set(results) <= {R.CREATED, R.EXISTS, R.EXCEEDS_CREDITS}, (transfer_id, results)
    assert any(R.EXCEEDS_CREDITS in results for results in answers.values())  # it did run dry

    # Exactly what was answered `created` left the wallet, and it never went below zero.
    wallet = account(platform, WALLET)
    spent = sum(sent[i].amount for i in created)
    assert wallet.debits_posted == spent
    assert wallet.balance == FUNDS - spent
    assert wallet.balance >= 0
    assert wallet.debits_pending == 0
    assert sum(account(platform, r).balance for r in RECEIVERS) == spent

    # Every created transfer is stored as sent; every other id is not stored at all.
    for transfer_id, t in sent.items():
        view = ledger_service.get_transfer(uow(), transfer_id)
        if transfer_id in created:
            assert view is not None, transfer_id
            assert view.record[:10] == t
        else:
            assert view is None, (transfer_id, answers[transfer_id])
            assert R.EXISTS not in answers[transfer_id]

    # The wallet's history holds each created transfer once, and its running balance never
    # dipped below zero at any point of the race.
    statement = ledger_service.statement(uow(), WALLET, limit=10_000)
    assert statement is not None
    assert statement.next_after is None
    debits = [line.transfer_id for line in statement.lines if line.direction == "debit"]
    assert sorted(debits) == sorted(created)
    assert min(line.balance for line in statement.lines) >= 0
    assert statement.lines[-1].balance == wallet.balance

    report = ledger_service.check_invariants(uow())
    assert report.ok, report.problems
