"""The README's walkthroughs are executable documentation: they run as written.

**The convention.** Every fenced block whose info string starts with `sh` or `bash` is a
walkthrough step and runs, unless the info string says `norun` and why (```` ```sh norun: why
````): the `make` commands, installing system packages, the command summary. The steps are
joined, in README order, into one bash script run with `set -euo pipefail`, so a variable used
before it is set, a command that fails, or an HTTP error stops the run at its README line.

**The run.** A fresh scratch folder (the walkthroughs write databases and keys into the current
folder, never into the repository) and a clean environment: PATH with the venv's `cityshare`
(and `python3`) first, HOME the scratch folder, and only the variables the README says it reads
for its servers' addresses: `CITYSHARE_PORT` (the platform's own setting), `OCPP_PORT` and
`MQTT_URL` (a real Mosquitto this test starts), so that parallel tests never share a port. The
README starts its own servers (`cityshare serve &`, `cityshare ocpp serve &`, `cityshare ingest
mqtt &`) and waits for each with a bounded readiness loop; whatever it left running is stopped
when the script exits (a trap), and the whole process group is killed if it outlives that.

**The outcomes.** After the README's last step, the same shell saves what a reader would look
at (with the README's own variables), and the test checks it: the demo's wallet, the meter's
credits, the twin's verification, the bill paid from the topped-up wallet, the billing staff's
read in the resident's access log, the share given to the second resident.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from processes import free_port
from services import MosquittoServer

README = Path(__file__).resolve().parents[2] / "README.md"
SHELLS = ("sh", "bash")
FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
#: The whole walkthrough takes 1-2 minutes on a busy machine; a hang is stopped long after.
RUN_TIMEOUT_S = 600
#: The price list the README sets for its provider, paise per kWh.
SUNRISE_PRICES = {"normal": 650, "solar": 480, "peak": 790}

PRELUDE = """\
set -euo pipefail
trap 'echo "walkthrough: exit $? at script line $LINENO" >&2' ERR
stop_jobs() { kill $(jobs -p) 2>/dev/null || true; wait || true; }
trap 'status=$?; trap - EXIT ERR; stop_jobs; exit $status' EXIT
"""

#: Run after the README, in the same shell: what a reader would look at, saved for the test.
EPILOGUE = """\
echo "walkthrough: README done"
cityshare ledger account 500 --json --db sqlite:///demo.db > out-demo-500.json
call -H "Authorization: Bearer $T" $API/api/v1/me/energy > out-energy.json
call -H "Authorization: Bearer $T" $API/api/v1/me/statements/$MONTH > out-statement.json
call -H "Authorization: Bearer $T" $API/api/v1/me/access-log > out-access-log.json
call -H "Authorization: Bearer $T2" $API/api/v1/me/shares > out-shares-2.json
"""


@dataclass(frozen=True)
class Block:
    line: int  # the README line of the opening fence
    lang: str
    norun: str | None  # why the block does not run, or None when it runs
    code: str


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block of `text` with its language and, for `norun`, its reason."""
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group(1).strip()
        lang, _, rest = info.partition(" ")
        rest = rest.strip()
        norun = rest[len("norun") :].lstrip(" :-—").strip() if rest.startswith("norun") else None
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(line, lang, norun, match.group(2)))
    return blocks


def walkthrough_steps(text: str) -> list[Block]:
    return [b for b in readme_blocks(text) if b.lang in SHELLS and b.norun is None]


def walkthrough_script(steps: list[Block]) -> tuple[str, list[int]]:
    """The script, and for each of its lines the README line it came from (0: not README)."""
    lines: list[str] = []
    origin: list[int] = []

    def add(text: str, first_readme_line: int = 0) -> None:
        for i, line in enumerate(text.splitlines()):
            lines.append(line)
            origin.append(first_readme_line + i if first_readme_line else 0)

    add(PRELUDE)
    for step in steps:
        add(f"# README.md line {step.line}")
        add(step.code, step.line + 1)
    add(EPILOGUE)
    return "\n".join(lines) + "\n", origin


def test_every_shell_block_runs_or_says_why_not() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    shells = [b for b in blocks if b.lang in SHELLS]
    assert len(shells) > 10
    unexplained = [b.line for b in shells if b.norun == ""]
    assert unexplained == [], f"`norun` blocks without a reason at README lines {unexplained}"
    assert {b.lang for b in blocks} <= {*SHELLS, ""}, "a block in another language: run it or not?"
    assert len(walkthrough_steps(README.read_text(encoding="utf-8"))) >= 8


def _json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_the_readme_walkthroughs_run_as_written(
    tmp_path: Path, own_mqtt_broker: MosquittoServer
) -> None:
    script, origin = walkthrough_script(walkthrough_steps(README.read_text(encoding="utf-8")))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "walkthrough.sh").write_text(script, encoding="utf-8")
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "cityshare").exists(), f"no cityshare beside {sys.executable}"
    env = {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(scratch),
        "LANG": "C.UTF-8",
        "CITYSHARE_PORT": str(free_port()),
        "OCPP_PORT": str(free_port()),
        "MQTT_URL": own_mqtt_broker.url,
    }
    if "PYTHONPATH" in os.environ:  # the code under test, when it is not the installed one
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    output = tmp_path / "output.txt"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(tmp_path / "walkthrough.sh")],
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status = proc.wait(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            # Anything the script left behind (it stops its own jobs, so normally nothing).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.read_text(encoding="utf-8", errors="replace")
    where = re.findall(r"walkthrough: exit \d+ at script line (\d+)", text)
    at = [origin[int(n) - 1] for n in where if 0 < int(n) <= len(origin)]
    logs = "".join(
        f"\n--- {p.name} (tail) ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-30:])
        for p in sorted(scratch.glob("*.log"))
    )
    assert status == 0, (
        f"the walkthrough {'timed out' if status is None else f'exited {status}'}"
        f"{f' at README.md line {at[-1]}' if at and at[-1] else ''}:\n"
        + "\n".join(text.splitlines()[-60:])
        + logs
    )
    assert "walkthrough: README done" in text

    # Using the ledger: 5 points in, 1.5 out to the hold's receiver.
    demo = _json(scratch / "out-demo-500.json")
    assert (demo["credits_posted"], demo["debits_posted"]) == (5000, 1500)

    # Trust: the twin verified the replica it synced.
    assert _json(scratch / "twin-verify.json")["ok"] is True

    # Energy over HTTP and MQTT: 900 Wh exported (600 + 300), 620 Wh imported; carbon at
    # 0.861 g/Wh; the meter's readings up to seq 4 (the pay-as-you-go ones) all arrived.
    energy = _json(scratch / "out-energy.json")
    totals = energy["totals"]
    assert (totals["exported_wh"], totals["imported_wh"]) == (900, 620)
    assert totals["carbon_g"] == 900 * 861 // 1000
    assert totals["credit_milli"] > 0
    assert 4 in [m["seq"] for m in energy["devices"]]

    # Pay-as-you-go: the 500 Wh imported after choosing Sunrise were billed at its price for
    # the window they began in, and paid from the topped-up INR wallet; the earlier imports
    # had no price in force. Sunrise's billing staff's read is in the resident's access log.
    statement = _json(scratch / "out-statement.json")
    sunrise = [i for i in statement["imports"] if i["provider"] == "Sunrise Power"]
    assert len(sunrise) == 1, statement["imports"]
    price = SUNRISE_PRICES[sunrise[0]["window"]]
    bill = 500 * price // 1000
    assert (sunrise[0]["import_wh"], sunrise[0]["amount"]) == (500, bill)
    assert [(p["provider"], p["amount"]) for p in statement["payments"]] == [
        ("Sunrise Power", bill)
    ]
    wallet = statement["wallet"]
    assert [wallet[k] for k in ("opening", "received", "paid", "closing")] == [
        0, 50000, bill, 50000 - bill
    ]  # fmt: skip
    readers = {(r["who"], r["purpose"]) for r in _json(scratch / "out-access-log.json")["records"]}
    assert ("operator:sunrise-desk", "billing") in readers, readers
    assert ("auditor:city-audit", "audit") in readers, readers

    # Community: the second resident holds the one share the first gave them.
    holdings = _json(scratch / "out-shares-2.json")["holdings"]
    assert [(h["asset_name"], h["shares"], h["total_shares"]) for h in holdings] == [
        ("Ward 12 Solar", 1, 4)
    ]
