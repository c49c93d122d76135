"""Periodic jobs: each capability's `jobs` (kernel/capability.py), handed to the bus on a timer.

A job's command is handed over in a worker thread (the bus and the database are blocking), and a
failed run is logged and tried again at the next tick: a job is idempotent work such as "bill
what is not billed yet", so a missed or repeated run loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from cityshare.kernel.bus import MessageBus
from cityshare.kernel.capability import Capability, Job
from cityshare.kernel.settings import Settings

log = logging.getLogger(__name__)


def scheduled_jobs(capabilities: Iterable[Capability], settings: Settings) -> list[Job]:
    """The jobs that run with these settings (an interval of 0 turns a job off)."""
    return [job for c in capabilities for job in c.jobs if job.every(settings) > 0]


async def run_every(job: Job, bus: MessageBus, settings: Settings) -> None:
    """Run `job` every `job.every(settings)` seconds until cancelled."""
    interval = job.every(settings)
    while True:
        await asyncio.sleep(interval)
        try:
            result = await asyncio.to_thread(bus.handle, job.command())
            log.debug("%s ran: %r", job.name, result)
        except Exception:
            log.exception("%s failed; will try again", job.name)
