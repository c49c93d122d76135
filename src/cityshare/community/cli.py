"""`cityshare community`: settle community assets (pay each ended period's earnings out to
their shareholders). `cityshare serve` does the same every `CITYSHARE_COMMUNITY_SETTLE_SECONDS`;
over HTTP it is `POST /api/v1/organisations/{id}/distributions`."""

from __future__ import annotations

import typer

from cityshare.cli.common import (
    DB_OPTION,
    JSON_OPTION,
    console,
    err_console,
    open_platform,
    print_json,
)
from cityshare.community import commands
from cityshare.community import queries as community
from cityshare.community.handlers import Status
from cityshare.community.model import CommunityError

app = typer.Typer(
    help="Community assets: shared solar arrays and batteries owned by residents' shares.",
    no_args_is_help=True,
)


@app.command()
def settle(
    asset: int | None = typer.Option(None, "--asset", help="Only this asset (an organisation id)."),
    period_end: str | None = typer.Option(
        None,
        "--period-end",
        help="Only the period ending then: an ISO 8601 date (local midnight in the tariff's "
        "timezone) or date and time. Default: every ended period not yet settled.",
    ),
    database_url: str | None = DB_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    """Distribute every community asset's earnings for each settlement period that ended and
    is not settled yet, pro rata to the holders at the period end (a rerun pays nothing
    twice)."""
    platform = open_platform(database_url)
    zone = platform.tariff.zone
    try:
        end = None if period_end is None else community.period_end_from(period_end, zone)
        outcomes = platform.bus.handle(commands.SettleCommunityAssets(asset, end))
    except CommunityError as exc:
        err_console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    finally:
        platform.close()
    if as_json:
        print_json(
            [
                {
                    "asset_id": o.asset_id,
                    "period_end": community.local_iso(o.period_end, zone),
                    "status": o.status.value,
                    "credit_milli": o.distribution.credit_milli if o.distribution else 0,
                    "carbon_g": o.distribution.carbon_g if o.distribution else 0,
                    "holders": o.distribution.holders if o.distribution else 0,
                }
                for o in outcomes
            ]
        )
        return
    paid = [o for o in outcomes if o.status == Status.DISTRIBUTED and o.distribution]
    for o in paid:
        assert o.distribution is not None
        d = o.distribution
        console.print(
            f"asset {o.asset_id}, period ending {community.local_iso(o.period_end, zone)}: "
            f"{d.credit_milli} milli-points and {d.carbon_g} g CO2e to {d.holders} holders"
        )
    console.print(f"{len(paid)} distributed, {len(outcomes) - len(paid)} with nothing to pay")
