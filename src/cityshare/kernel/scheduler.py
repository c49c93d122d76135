"""Periodic jobs: each capability's `jobs` (kernel/capability.py), handed to the bus on a timer
by one scheduler at a time.

`serve` runs a scheduler beside the HTTP API, and `cityshare worker` runs one on its own (for
deployments whose doors are MQTT and OCPP workers, with no HTTP server). Any number of them may
share a database: only the one that holds the database lease (`Lease`, table
`scheduler_leases`) runs jobs, so two processes never both bill; the others wait and take over
once the holder's lease expires (it stopped, or lost the database).

A job's command is handed to the bus in the scheduler's thread (the bus and the database are
blocking), and a failed run is logged and tried again at the job's next time: a job is
idempotent work such as "bill what is not billed yet", so a missed or repeated run loses
nothing. That is also why a lease, not a lock held for the life of a job, is enough: the lease
is renewed before each job, and the setting `scheduler_lease_seconds` must be longer than the
longest job (the defaults: 30 s, against jobs that do a bounded batch each).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, insert, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from cityshare.kernel.capability import Capability, Job
from cityshare.kernel.clock import Clock
from cityshare.kernel.db import WRITE
from cityshare.kernel.messages import Command
from cityshare.kernel.scheduler_tables import scheduler_leases
from cityshare.kernel.settings import KernelSettings

log = logging.getLogger(__name__)

#: The name of the periodic jobs' lease.
LEASE = "scheduler"

#: A lease is renewed when a third of its time has passed: a holder that misses one renewal
#: (a slow job, a busy database) still holds it at the next.
RENEW_FRACTION = 3

_NS = 1_000_000_000


def scheduled_jobs(capabilities: Iterable[Capability], settings: KernelSettings) -> list[Job]:
    """The jobs that run with these settings (an interval of 0 turns a job off)."""
    return [job for c in capabilities for job in c.jobs if job.every(settings) > 0]


def holder_id() -> str:
    """This scheduler instance's name in the lease table: host:pid:random (a restarted
    process, or a second scheduler in one process, is another holder)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class Lease:
    """A named lease in `scheduler_leases`, taken or renewed by compare-and-set.

    `acquire` is one short write transaction: an UPDATE that succeeds only if this holder has
    the lease or the lease has expired, and, if there is no row yet, an INSERT (the primary key
    refuses a second one). PostgreSQL re-checks the UPDATE's condition on the row a concurrent
    taker committed, and SQLite runs one writer at a time, so of schedulers racing for an
    expired lease exactly one gets it; the same SQL runs on both.

    Expiry is by the holders' clocks (ns since the epoch): hosts sharing a database must keep
    their clocks within a small part of the lease time of one another (NTP does).
    """

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        ttl_seconds: float,
        *,
        name: str = LEASE,
        holder: str | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.ttl_ns = int(ttl_seconds * _NS)
        self.name = name
        self.holder = holder or holder_id()
        #: Until when this holder knows it holds the lease (0: it does not).
        self.expires_at = 0

    def acquire(self) -> bool:
        """Take the lease, or renew it if this holder has it; True if it is now held."""
        now = self.clock.now_ns()
        expires = now + self.ttl_ns
        table = scheduler_leases
        try:
            with self.engine.connect() as conn:
                conn = conn.execution_options(**{WRITE: True})
                with conn.begin():
                    taken = conn.execute(
                        update(table)
                        .where(
                            table.c.name == self.name,
                            or_(table.c.holder == self.holder, table.c.expires_at <= now),
                        )
                        .values(holder=self.holder, expires_at=expires)
                    ).rowcount
                    if not taken:
                        row = conn.execute(
                            select(table.c.holder).where(table.c.name == self.name)
                        ).first()
                        if row is None:
                            conn.execute(
                                insert(table).values(
                                    name=self.name, holder=self.holder, expires_at=expires
                                )
                            )
                            taken = 1
        except IntegrityError:  # another scheduler inserted the first row meanwhile
            taken = 0
        self.expires_at = expires if taken else 0
        return bool(taken)

    def release(self) -> None:
        """Give the lease up (a stopping scheduler), so another takes over at once."""
        if not self.expires_at:
            return
        self.expires_at = 0
        table = scheduler_leases
        with self.engine.connect() as conn:
            conn = conn.execution_options(**{WRITE: True})
            with conn.begin():
                conn.execute(
                    update(table)
                    .where(table.c.name == self.name, table.c.holder == self.holder)
                    .values(expires_at=0)
                )


class Scheduler:
    """Runs `jobs` through `handle` (the bus's) when they are due, while it holds `lease`.

    Each job is first due one interval after the scheduler starts, then one interval after its
    last run ended. A scheduler that does not hold the lease keeps the same times, so one that
    takes over from a stopped holder runs at once what is overdue.
    """

    def __init__(
        self,
        jobs: Sequence[Job],
        handle: Callable[[Command], Any],
        lease: Lease,
        settings: KernelSettings,
    ) -> None:
        self.jobs = list(jobs)
        self.handle = handle
        self.lease = lease
        self.clock = lease.clock
        self.every = {job.name: int(job.every(settings) * _NS) for job in self.jobs}
        now = self.clock.now_ns()
        self.due = {job.name: now + self.every[job.name] for job in self.jobs}
        self.renew_ns = max(lease.ttl_ns // RENEW_FRACTION, 1)
        self._renewed_at: int | None = None

    def holds(self) -> bool:
        """Whether this scheduler holds the lease now, renewing it if a third of its time has
        passed (a database error counts as not holding it, and is logged)."""
        now = self.clock.now_ns()
        fresh = self._renewed_at is not None and now < self._renewed_at + self.renew_ns
        if fresh and now < self.lease.expires_at:
            return True
        try:
            held = self.lease.acquire()
        except DBAPIError:
            log.exception("the scheduler's lease could not be taken; will try again")
            held = False
        if held and self._renewed_at is None:
            log.info("scheduler %s holds the lease; running jobs", self.lease.holder)
        elif not held and self._renewed_at is not None:
            log.warning("scheduler %s lost the lease; jobs run elsewhere", self.lease.holder)
        self._renewed_at = now if held else None
        return held

    def tick(self) -> list[str]:
        """Run the jobs that are due, if this scheduler holds the lease (checked again before
        each job); the names of the jobs run."""
        ran: list[str] = []
        if not self.holds():  # also renews the lease when no job is due
            return ran
        for job in self.jobs:
            if self.due[job.name] > self.clock.now_ns():
                continue
            if not self.holds():
                break
            self._run(job)
            ran.append(job.name)
        return ran

    def run_all(self) -> list[str] | None:
        """Run every job once now (`cityshare worker --once`) and give the lease up; None if
        another scheduler holds it."""
        if not self.holds():
            return None
        try:
            ran: list[str] = []
            for job in self.jobs:
                if not self.holds():
                    break
                self._run(job)
                ran.append(job.name)
            return ran
        finally:
            self.release()

    def _run(self, job: Job) -> None:
        try:
            result = self.handle(job.command())
            log.debug("%s ran: %r", job.name, result)
        except Exception:
            log.exception("%s failed; will try again", job.name)
        self.due[job.name] = self.clock.now_ns() + self.every[job.name]

    def wait_seconds(self) -> float:
        """How long to sleep before the next tick: to the next due job if this scheduler holds
        the lease (and no longer than its next renewal), else to the next try for the lease."""
        if self._renewed_at is None:
            return self.renew_ns / _NS
        now = self.clock.now_ns()
        nearest = min(self.due.values(), default=now + self.renew_ns)
        return max(0.0, min(nearest - now, self._renewed_at + self.renew_ns - now) / _NS)

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set, then give the lease up. A job under way when it is set
        is finished first."""
        try:
            while not stop.is_set():
                try:
                    self.tick()
                except Exception:  # never let one bad tick end the loop
                    log.exception("the scheduler's tick failed; will try again")
                stop.wait(max(self.wait_seconds(), 0.01))
        finally:
            self.release()

    def release(self) -> None:
        self._renewed_at = None
        try:
            self.lease.release()
        except DBAPIError:
            log.exception("the scheduler's lease could not be given up; it expires by itself")
