"""`cityshare`: serve the platform, manage its database, inspect the ledger, run benchmarks."""

from __future__ import annotations

import secrets

import typer
from pydantic import SecretStr

from cityshare import __version__
from cityshare.audit import cli as audit
from cityshare.bench import cli as bench
from cityshare.capabilities import CAPABILITIES
from cityshare.cli import db
from cityshare.cli.common import DB_OPTION, console, settings_with
from cityshare.cli.worker import worker
from cityshare.issuer import cli as issuer
from cityshare.twin import cli as twin

app = typer.Typer(
    name="cityshare",
    help="cityshare: residents earn smart credit points by sharing what they own, and spend "
    "or trade them in the city. Run `cityshare COMMAND --help` for each command.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",
)
app.add_typer(db.app, name="db")
for capability in CAPABILITIES:
    for name, group in capability.cli():
        app.add_typer(group, name=name)
# Programs beside the platform: its auditors' tools, the reference issuer, the benchmarks.
app.add_typer(audit.app, name="audit")
app.add_typer(twin.app, name="twin")
app.add_typer(issuer.app, name="issuer")
app.add_typer(bench.app, name="bench")

def _version(value: bool) -> None:
    if value:
        typer.echo(f"cityshare {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """cityshare: the smart-city sharing platform."""


@app.command()
def serve(
    host: str = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="TCP port (default 8000)."),
    database_url: str | None = DB_OPTION,
    demo: bool = typer.Option(False, "--demo", help="Seed a small demo ledger before serving."),
    log_level: str = typer.Option(None, help="debug, info, warning or error."),
) -> None:
    """Serve the HTTP API (FastAPI + uvicorn), and run the periodic jobs as `cityshare worker`
    does (one process at a time acts: a database lease). Applies database migrations first.

    The operator token (CITYSHARE_OPERATOR_TOKEN) stands for an administrator; if it is not set,
    a random one is made for this run and printed here (never logged). Residents enrol with an
    assertion from an issuer named in CITYSHARE_ISSUER_KEYS; the audit log's key is printed so
    auditors can pin it.
    """
    import uvicorn

    from cityshare.api.app import create_app
    from cityshare.bootstrap import bootstrap
    from cityshare.kernel.logging import configure_logging

    settings = settings_with(database_url)
    updates: dict[str, object] = {}
    if host:
        updates["host"] = host
    if port:
        updates["port"] = port
    if log_level:
        updates["log_level"] = log_level
    if settings.operator_token is None:
        token = secrets.token_urlsafe(24)
        updates["operator_token"] = SecretStr(token)
        console.print(
            f"[bold]No CITYSHARE_OPERATOR_TOKEN set; this run's operator token:[/] {token}"
        )
    settings = settings.model_copy(update=updates)
    configure_logging(settings.log_level)
    platform = bootstrap(settings)
    if demo:
        from cityshare.sim.demo import seed

        seeded = seed(platform)
        console.print(f"Demo ledger ready ({seeded['created']} new transfers).")
    console.print(f"Audit log key: {platform.log_signer.verifier.vkey}")
    if not settings.issuer_keys.strip():
        console.print(
            "[yellow]No CITYSHARE_ISSUER_KEYS set: residents cannot enrol until an identity "
            "issuer's key is trusted (`cityshare issuer key` prints one).[/]"
        )
    console.print(
        f"cityshare {__version__} on http://{settings.host}:{settings.port} "
        f"(docs at /docs, database {platform.engine.url.render_as_string(hide_password=True)})"
    )
    try:
        uvicorn.run(
            create_app(platform),
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
        )
    finally:
        platform.close()


app.command()(worker)


def main() -> None:
    app()
