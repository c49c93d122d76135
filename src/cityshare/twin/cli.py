"""`cityshare twin`: the digital twin, a verified replica of the audit log and its witness."""

from __future__ import annotations

from pathlib import Path

import httpx
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cityshare.cli.common import JSON_OPTION, console, err_console, print_json
from cityshare.ledger.model import Ledger
from cityshare.twin import evidence as twin_evidence
from cityshare.twin import replica as twin
from cityshare.twin import sync as twin_sync
from cityshare.twin import verify as twin_verify
from cityshare.twin import witness as twin_witness

app = typer.Typer(
    help="The digital twin: replicate the audit log, check every checkpoint is consistent with "
    "the last one trusted, recompute the ledger from the entries, and cosign what was checked.",
    no_args_is_help=True,
)

DIR_OPTION = typer.Option(
    ..., "--dir", help="The twin's folder (its key, replica and trusted checkpoint)."
)


def _progress() -> Progress:
    # On stderr, so `--json` output on stdout stays one JSON object.
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
    )


@app.command()
def init(
    directory: Path = DIR_OPTION,
    name: str = typer.Option(
        twin_witness.DEFAULT_WITNESS_NAME, "--name", help="The witness's name (no spaces, no '+')."
    ),
) -> None:
    """Make the twin's cosigning key (DIR/witness.skey, mode 0600) and print its public key."""
    try:
        cosigner, created = twin_witness.init(directory, name)
    except twin.TwinError as exc:
        err_console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from exc
    except ValueError as exc:  # a bad --name
        err_console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(2) from exc
    if created:
        console.print(
            f"[green]✓[/] witness key made in {directory / twin_witness.WITNESS_KEY_FILE}"
        )
    else:
        console.print(
            f"{directory / twin_witness.WITNESS_KEY_FILE} already exists; keeping that key"
        )
    console.print(
        "Give the primary this key so it accepts and serves the twin's cosignatures:\n"
        f"  CITYSHARE_WITNESS_KEYS={cosigner.vkey}",
        soft_wrap=True,
    )


@app.command()
def key(directory: Path = DIR_OPTION) -> None:
    """Print the twin's witness verifier key (vkey) and nothing else, for scripts and
    configuration (CITYSHARE_WITNESS_KEYS on the primary)."""
    try:
        cosigner = twin_witness.load_cosigner(directory)
    except twin.TwinError as exc:
        err_console.print(f"[red]✗[/] {exc}")
        raise typer.Exit(1) from exc
    typer.echo(cosigner.vkey)


@app.command()
def sync(
    url: str = typer.Option(
        ..., "--from", help="The primary's base URL, e.g. http://127.0.0.1:8000."
    ),
    directory: Path = DIR_OPTION,
    log_key: str | None = typer.Option(
        None,
        "--log-key",
        help="The log's verifier key (GET /api/v1/log/key, checked out of band). Without it the "
        "first sync trusts what the primary serves, with a warning.",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        envvar="CITYSHARE_OPERATOR_TOKEN",
        help="Bearer token that may read log entries (default: $CITYSHARE_OPERATOR_TOKEN).",
        show_default=False,
    ),
    as_json: bool = JSON_OPTION,
) -> None:
    """Fetch and verify the newest checkpoint and the entries since the last sync, then cosign.

    Exits 1, trusting nothing new, when the checkpoint's signature fails, the log shrank, the
    new checkpoint is inconsistent with the trusted one, the entries do not hash to its root,
    or the primary answers garbage. A checkpoint that contradicts the trusted one (a rollback,
    a fork, a rewritten history) is kept with it as evidence in DIR/evidence/.
    """

    def warn(message: str) -> None:
        err_console.print(f"[yellow]![/] {message}", soft_wrap=True)

    with _progress() as progress:
        task = progress.add_task("entries", total=None, visible=False)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, visible=True)

        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                report = twin_sync.sync(
                    client,
                    directory,
                    log_key=log_key,
                    token=token,
                    warn=warn,
                    on_progress=on_progress,
                )
        except twin.TwinError as exc:
            progress.stop()
            kind = "tampering detected" if isinstance(exc, twin.TamperError) else "sync failed"
            err_console.print(f"[red]✗ {kind}:[/] {exc}", soft_wrap=True)
            if as_json:
                evidence = exc.evidence if isinstance(exc, twin.TamperError) else None
                print_json(
                    {
                        "ok": False,
                        "tampering": isinstance(exc, twin.TamperError),
                        "error": str(exc),
                        "evidence": None if evidence is None else str(evidence),
                    }
                )
            raise typer.Exit(1) from exc
    if report.cosignature_warning:
        warn(report.cosignature_warning)
    if as_json:
        print_json(report.as_json())
        return
    if report.size == 0:
        console.print(f"the log {report.origin} is empty; its key is pinned, nothing to verify yet")
        return
    console.print(
        f"[green]✓[/] {report.origin}: trusted size {report.previous_size} → {report.size} "
        f"({report.fetched} entries fetched and verified), root {report.as_json()['root']}",
        soft_wrap=True,
    )
    if report.accepted:
        console.print(f"[green]✓[/] cosigned; the primary keeps it ({', '.join(report.accepted)})")
    elif report.cosigned:
        console.print("cosigned, but the primary did not keep it (see the warning above)")


@app.command()
def verify(directory: Path = DIR_OPTION, as_json: bool = JSON_OPTION) -> None:
    """Rebuild the replica's tree and compare it with the trusted checkpoint, then recompute
    every balance from the entries alone, and re-check the evidence of equivocation kept in
    DIR/evidence/ (two checkpoints signed by the log that contradict each other, kept by a
    refused sync).

    Exit 1 on any problem, and while DIR/evidence/ holds any file: the log has been caught
    showing two histories, which someone must look into. The files are never removed by the
    twin; move one out of the folder once it has been dealt with.
    """
    with _progress() as progress:
        task = progress.add_task("replaying", total=None, visible=False)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, visible=True)

        try:
            report = twin_verify.verify(directory, on_progress=on_progress)
        except twin.TwinError as exc:
            progress.stop()
            err_console.print(f"[red]✗[/] {exc}")
            raise typer.Exit(1) from exc
    data = twin_verify.verify_json(report)
    if as_json:
        print_json(data)
        raise typer.Exit(0 if report.ok else 1)
    result = report.replay
    console.print(
        f"replica of {report.size} entries ({result.account_entries} accounts, "
        f"{result.transfer_entries} transfers, {result.hold_expired_entries} lapsed holds, "
        f"{result.record_entries} other records); {result.open_holds} holds open"
    )
    ledgers = Table(
        "ledger", "accounts", "debits posted", "credits posted", "debits pending", "credits pending"
    )
    for row in data["ledgers"]:
        ledgers.add_row(
            _ledger_name(row["ledger"]),
            *(str(row[k]) for k in _TOTALS),
        )
    console.print(ledgers)
    accounts = Table("account", "ledger", "owner", "balance", "available", "pending in/out")
    shown = data["accounts"][:50]
    for a in shown:
        accounts.add_row(
            str(a["id"]),
            _ledger_name(a["ledger"]),
            a["owner"] or "-",
            str(a["balance"]),
            str(a["available"]),
            f"{a['credits_pending']}/{a['debits_pending']}",
        )
    console.print(accounts)
    if len(data["accounts"]) > len(shown):
        console.print(f"… and {len(data['accounts']) - len(shown)} more accounts (see --json)")
    for problem in data["problems"]:
        console.print(f"[red]✗[/] {problem}", soft_wrap=True)
    for item in report.evidence:
        sizes = (
            f": trusted size {item.trusted[0]}, offered size {item.offered[0]}"
            if item.trusted is not None and item.offered is not None
            else ""
        )
        meaning = twin_evidence.EVIDENCE_KINDS.get(item.kind, item.kind)
        detail = f" ({item.detail})" if item.detail else ""
        invalid = f"; but the file is not valid evidence: {item.problem}" if item.problem else ""
        where = directory / twin_evidence.EVIDENCE_DIR / item.file
        console.print(
            f"[red]✗ evidence[/] {escape(f'{where}: {meaning}{sizes}{detail}{invalid}')}",
            soft_wrap=True,
        )
    if report.evidence and report.replay.ok and not report.problems:
        console.print(
            "the replica itself is sound; the evidence above is what makes this verify fail"
        )
    if data["problem_count"] > len(data["problems"]):
        console.print(f"[red]✗[/] … {data['problem_count'] - len(data['problems'])} more problems")
    if report.ok:
        console.print(
            f"[green]✓[/] the replica matches the trusted checkpoint of size {report.size} and "
            "the ledger replays clean"
        )
    raise typer.Exit(0 if report.ok else 1)


_TOTALS = ("accounts", "debits_posted", "credits_posted", "debits_pending", "credits_pending")


def _ledger_name(ledger: int) -> str:
    return Ledger(ledger).name if ledger in Ledger._value2member_map_ else str(ledger)
