"""`cityshare worker`: the platform's periodic jobs without the HTTP server."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import typer

from cityshare.cli.common import DB_OPTION, console, err_console, settings_with


def worker(
    database_url: str | None = DB_OPTION,
    log_level: str = typer.Option(None, help="debug, info, warning or error."),
    once: bool = typer.Option(
        False, "--once", help="Run every job once now and exit (for cron, or by hand)."
    ),
) -> None:
    """Run the platform's periodic jobs (billing, releasing expired holds, bridging silent
    meters' gaps, settling community assets, purging old idempotency keys) until SIGINT or
    SIGTERM, without the HTTP server: for deployments whose doors are MQTT and OCPP workers
    (`cityshare ingest`, `cityshare ocpp serve`). Applies database migrations first.

    `serve` runs the same jobs. Any number of `serve` and `worker` processes may share a
    database: only the holder of its scheduler lease runs jobs, and another takes over within
    CITYSHARE_SCHEDULER_LEASE_SECONDS (30) of the holder stopping. Each job's interval is its
    setting (CITYSHARE_BILLING_SECONDS, CITYSHARE_EXPIRY_SWEEP_SECONDS, ...; 0 turns one off).
    With `--once`, runs nothing (and says so) if another process holds the lease.
    """
    from cityshare.bootstrap import bootstrap
    from cityshare.kernel.logging import configure_logging

    settings = settings_with(database_url)
    if log_level:
        settings = settings.model_copy(update={"log_level": log_level})
    configure_logging(settings.log_level)
    platform = bootstrap(settings)
    try:
        scheduler = platform.scheduler()
        names = ", ".join(job.name for job in scheduler.jobs) or "none"
        if once:
            ran = scheduler.run_all()
            if ran is None:
                err_console.print("Another scheduler holds the lease; it runs the jobs.")
                return
            console.print(f"Ran: {', '.join(ran) or 'nothing'}.")
            return
        stop = threading.Event()

        def _stop(signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        console.print(
            f"cityshare worker {scheduler.lease.holder} on "
            f"{platform.engine.url.render_as_string(hide_password=True)}; jobs: {names}"
        )
        scheduler.run(stop)
        console.print("Stopped.")
    finally:
        platform.close()
