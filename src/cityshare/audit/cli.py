"""`cityshare audit`: check the whole store against its tamper-evident audit log."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cityshare.audit import verify as audit_service
from cityshare.audit.report import AuditReport
from cityshare.bootstrap import default_key_dir, parse_witness_keys, unit_of_work
from cityshare.cli.common import (
    DB_OPTION,
    JSON_OPTION,
    console,
    err_console,
    print_json,
    settings_with,
)
from cityshare.kernel import keys
from cityshare.kernel.db import is_sqlite, make_engine, normalise_url, sqlite_file
from cityshare.kernel.errors import StoreUnavailable
from cityshare.kernel.seal import Sealer
from cityshare.settings import Settings
from cityshare.tlog import note

app = typer.Typer(help="Verify the audit log and every record it covers.", no_args_is_help=True)

LOG_KEY_OPTION = typer.Option(
    None,
    "--log-key",
    help="The log's verifier key (signed-note vkey, as GET /api/v1/log/key serves it) to check "
    "checkpoints with. An auditor should pass the key they trust; the default is the "
    "platform's own key from its settings or key folder.",
    show_default=False,
)


def _usage_error(message: str) -> typer.Exit:
    err_console.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(2)


@app.command(
    help="Recompute every leaf hash, tree node and checkpoint root; check every checkpoint's "
    "signature; match every account, transfer and lapsed hold with its leaf, byte for byte; "
    "and recompute balances and pending-transfer states from the transfers. Cosignatures of "
    "the witnesses in CITYSHARE_WITNESS_KEYS are verified with their keys (others are only "
    "parsed). Sealed rows (charger password hashes, stored replies to keyed writes) are "
    "checked with the platform's seal key (CITYSHARE_SEAL_SECRET or the key folder's "
    "seal.secret) if present, else only counted.\n\n"
    "Exit 0 when everything checks out, 1 when anything is wrong (each problem names the "
    "table, the record and its leaf index), 2 on bad usage."
)
def verify(
    database_url: str | None = DB_OPTION,
    log_key: str | None = LOG_KEY_OPTION,
    as_json: bool = JSON_OPTION,
) -> None:
    settings = settings_with(database_url)
    url = normalise_url(settings.database_url)
    # Verification only reads: unlike the other commands it neither migrates the database nor
    # makes a log key, so pointing it at the wrong place changes nothing there.
    if is_sqlite(url):
        path = sqlite_file(url)
        if path is None or not path.is_file():
            raise _usage_error(f"no database file at {path or '(none)'}")
    verifier = _log_verifier(settings, url, log_key)
    try:
        witnesses = parse_witness_keys(settings.witness_keys)
    except keys.KeyStoreError as exc:
        raise _usage_error(str(exc)) from exc
    sealer = _seal_key(settings, url)
    engine = make_engine(url)
    try:
        if as_json:
            report = audit_service.verify(
                unit_of_work(engine, write=False), verifier, witnesses=witnesses, sealer=sealer
            )
        else:
            with Progress(
                TextColumn("leaves"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            ) as bar:
                task = bar.add_task("leaves", total=None)
                report = audit_service.verify(
                    unit_of_work(engine, write=False),
                    verifier,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                    witnesses=witnesses,
                    sealer=sealer,
                )
    except StoreUnavailable as exc:
        # Typically a database without the cityshare schema (or at an older revision).
        raise _usage_error(
            f"cannot read the database ({type(exc).__name__}); is it a cityshare database at "
            f"the current revision (`cityshare db upgrade`)? {str(exc).splitlines()[0]}"
        ) from exc
    finally:
        engine.dispose()
    if as_json:
        print_json(report.as_dict())
    else:
        _print_summary(report, verifier)
    raise typer.Exit(0 if report.ok else 1)


def _log_verifier(settings: Settings, url: str, log_key: str | None) -> note.Verifier:
    if log_key is not None:
        try:
            return note.Verifier.parse(log_key.strip())
        except note.NoteError as exc:
            raise _usage_error(f"--log-key is not a signed-note verifier key: {exc}") from exc
    if settings.log_key is not None:
        try:
            return note.Signer.parse(settings.log_key.get_secret_value().strip()).verifier
        except note.NoteError as exc:
            raise _usage_error(f"CITYSHARE_LOG_KEY is unusable: {exc}") from exc
    try:
        path = (settings.key_dir or default_key_dir(url)) / "log.skey"
        if not path.is_file():
            raise _usage_error(
                f"no log key at {path} and none in CITYSHARE_LOG_KEY: pass --log-key VKEY"
            )
        return keys.load_or_create_signer(path, settings.log_name).verifier
    except keys.KeyStoreError as exc:
        raise _usage_error(str(exc)) from exc


def _seal_key(settings: Settings, url: str) -> Sealer | None:
    """The platform's seal key, if this machine has it (settings or the key folder); unlike
    `serve`, verification never makes one. Without it sealed rows are counted, not checked."""
    path = (settings.key_dir or default_key_dir(url)) / "seal.secret"
    if settings.seal_secret is None and not path.is_file():
        return None
    try:
        return Sealer(keys.secret_from(settings.seal_secret, path))
    except keys.KeyStoreError as exc:
        raise _usage_error(str(exc)) from exc


def _print_summary(report: AuditReport, verifier: note.Verifier) -> None:
    records = ", ".join(f"{n} {table}" for table, n in report.records.items())
    console.print(
        f"checked {report.leaves} leaves, {report.nodes} tree nodes, {report.checkpoints} "
        f"checkpoints ({report.cosignatures} cosignatures, {report.cosignatures_unchecked} of "
        "witnesses whose key is not configured only parsed) signed by "
        f"{escape(verifier.name)}, "
        f"records matched with their leaves: {records}; {report.accounts} accounts' balances "
        f"and {report.pending_transfers} pending transfers recomputed; {report.seals} row "
        "seals checked"
        + (
            f", {report.seals_unchecked} not (no seal key: CITYSHARE_SEAL_SECRET or the key "
            "folder's seal.secret)"
            if report.seals_unchecked
            else ""
        ),
        soft_wrap=True,
    )
    for problem in report.problems:
        console.print(f"[red]✗[/] {escape(problem.message)}", soft_wrap=True)
    if report.omitted:
        console.print(f"[red]✗[/] … and {report.omitted} more problems not listed")
    if report.ok:
        console.print("[green]✓[/] the audit log and every record it covers are consistent")
    else:
        console.print(f"[red]{report.problem_count} problems found[/]")
