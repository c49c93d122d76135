"""`cityshare ocpp`: the OCPP central system chargers connect to."""

from __future__ import annotations

import logging

import typer

from cityshare.cli.common import DB_OPTION, console, open_platform

app = typer.Typer(
    help="The OCPP 1.6-J / 2.0.1 central system: chargers of operators connect to "
    "ws://HOST:PORT/ocpp/<charge_point_id> (HTTP Basic auth with the password the operator "
    "set), and V2G discharge is credited to the vehicle's owner.",
    no_args_is_help=True,
)


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(9000, "--port", min=0, max=65535, help="Port (0: any free one)."),
    database_url: str | None = DB_OPTION,
) -> None:
    """Run the central system until interrupted (Ctrl-C)."""
    from cityshare.charging.ocpp import server

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    platform = open_platform(database_url)

    def ready(bound: int) -> None:
        console.print(f"OCPP central system on ws://{host}:{bound}/ocpp/<charge_point_id>")

    try:
        server.run(platform, host, port, ready)
    except KeyboardInterrupt:
        pass
    finally:
        platform.close()
