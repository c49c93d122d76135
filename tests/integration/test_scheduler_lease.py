"""The scheduler's database lease: of the schedulers on one database (`serve`, `cityshare
worker`), one at a time runs the periodic jobs, and another takes over when it stops."""

from __future__ import annotations

import threading
from typing import Any

from cityshare.bootstrap import Platform
from cityshare.kernel.capability import Job
from cityshare.kernel.clock import ManualClock
from cityshare.kernel.messages import Command
from cityshare.kernel.scheduler import Lease, Scheduler
from cityshare.ledger.commands import ExpirePendingTransfers

TTL = 30.0


def scheduler(platform: Platform, clock: ManualClock, ran: list[str], name: str) -> Scheduler:
    """A scheduler of one job due every second that notes `name` in `ran` each time it runs."""

    def handle(command: Command) -> Any:
        ran.append(name)

    job = Job("tick", lambda _: 1.0, ExpirePendingTransfers)
    lease = Lease(platform.engine, clock, TTL, holder=f"test:{name}")
    return Scheduler([job], handle, lease, platform.settings)


def test_one_scheduler_runs_each_tick_and_another_takes_over_after_expiry(
    platform: Platform, clock: ManualClock
) -> None:
    ran: list[str] = []
    a = scheduler(platform, clock, ran, "a")
    b = scheduler(platform, clock, ran, "b")
    for _ in range(50):  # both tick every second; a took the lease first and keeps renewing it
        clock.advance(1)
        a.tick()
        b.tick()
    assert ran == ["a"] * 50
    ran.clear()
    # a stops (a crash: it does not give the lease up); b waits out the lease, then runs.
    # a renewed it every third of its time, so it lasts from 2/3 to all of TTL more.
    expires_at = a.lease.expires_at
    assert 2 * TTL / 3 <= (expires_at - clock.now_ns()) / 1e9 <= TTL
    while clock.now_ns() < expires_at - 10**9:
        clock.advance(1)
        assert b.tick() == []
    clock.advance((expires_at - clock.now_ns()) / 1e9)
    assert b.tick() == ["tick"]
    # a comes back: b holds the lease now, so a waits.
    for _ in range(40):
        clock.advance(1)
        a.tick()
        b.tick()
    assert ran == ["b"] * 41


def test_a_stopping_scheduler_hands_over_at_once(platform: Platform, clock: ManualClock) -> None:
    ran: list[str] = []
    a = scheduler(platform, clock, ran, "a")
    b = scheduler(platform, clock, ran, "b")
    clock.advance(1)
    assert a.tick() == ["tick"]
    assert b.tick() == []
    stop = threading.Event()
    stop.set()
    a.run(stop)  # stops at once, and gives the lease up
    assert b.tick() == ["tick"]
    assert a.tick() == []


def test_run_all_runs_every_job_once_unless_another_holds_the_lease(
    platform: Platform, clock: ManualClock
) -> None:
    ran: list[str] = []
    a = scheduler(platform, clock, ran, "a")
    b = scheduler(platform, clock, ran, "b")
    assert a.run_all() == ["tick"]  # not due yet: --once runs it anyway, and lets go
    clock.advance(1)
    assert b.tick() == ["tick"]
    assert a.run_all() is None
    assert ran == ["a", "b"]


def test_racing_takers_of_an_expired_lease_get_it_once(
    platform: Platform, clock: ManualClock
) -> None:
    """Compare-and-set under real concurrency: of eight threads taking one lease at the same
    instant (a fresh one, then an expired one), exactly one gets it each time."""
    leases = [Lease(platform.engine, clock, TTL, holder=f"t{i}") for i in range(8)]
    for _ in range(2):
        barrier = threading.Barrier(len(leases))
        results: list[bool] = []

        def take(lease: Lease, barrier: threading.Barrier, results: list[bool]) -> None:
            barrier.wait()
            results.append(lease.acquire())

        threads = [
            threading.Thread(target=take, args=(lease, barrier, results)) for lease in leases
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results) == [False] * 7 + [True]
        clock.advance(TTL)


def test_a_holder_renews_the_lease_it_holds(platform: Platform, clock: ManualClock) -> None:
    ttl = TTL
    a = Lease(platform.engine, clock, ttl, holder="a")
    b = Lease(platform.engine, clock, ttl, holder="b")
    assert a.acquire()
    clock.advance(ttl - 1)
    assert a.acquire()  # renewed: it now runs to ttl from here
    clock.advance(ttl - 1)
    assert not b.acquire()
    clock.advance(1)
    assert b.acquire()
    assert not a.acquire()
