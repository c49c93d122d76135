"""The README's energy walkthrough, as real processes: a resident registers a meter whose key
`cityshare device keygen` made, the meter's readings are signed with `cityshare device
sign-reading` and posted, and the credits arrive in the resident's wallet and energy view."""

from __future__ import annotations

import itertools
import json
import math
import re
import time
from fractions import Fraction
from pathlib import Path

import httpx

import cityshare as cityshare_package
from cityshare.energy.tariff import load_tariff
from processes import Server, cityshare, ok


def start_platform(tmp_path: Path, env: dict[str, str] | None = None) -> Server:
    """A reference issuer made with `cityshare issuer init` and `serve` trusting it."""
    issuer = ok(cityshare("issuer", "init", "--dir", "issuer", cwd=tmp_path)).stdout
    issuer_key = re.search(r"CITYSHARE_ISSUER_KEYS=(\S+)", issuer)
    assert issuer_key is not None
    (tmp_path / "platform").mkdir()
    server = Server(
        tmp_path / "platform",
        token="energy-admin",
        env={"CITYSHARE_ISSUER_KEYS": issuer_key[1], **(env or {})},
    )
    server.start()
    return server


def enrol_with_meter(tmp_path: Path, server: Server) -> tuple[httpx.Client, str]:
    """A resident enrolled through the issuer, with a meter whose key is in meter.key."""
    assertion = ok(
        cityshare(
            "issuer", "enroll", "--national-id", "-", "--sector", "cityshare",
            "--dir", "issuer", cwd=tmp_path, stdin="234123412346\n",
        )
    ).stdout.strip()  # fmt: skip
    enrolled = httpx.post(f"{server.url}/api/v1/residents", json={"assertion": assertion})
    resident = server.api(enrolled.json()["token"])
    public = ok(cityshare("device", "keygen", "--out", "meter.key", cwd=tmp_path)).stdout
    assert (tmp_path / "meter.key").stat().st_mode & 0o777 == 0o600
    device = resident.post(
        "/api/v1/me/devices", json={"kind": "meter", "public_key": public.strip()}
    ).json()["id"]
    return resident, str(device)


def sign_reading(tmp_path: Path, device: str, seq: int, ts: int, imp: int, exp: int) -> str:
    return ok(
        cityshare(
            "device", "sign-reading", "--key", "meter.key", "--device", device,
            "--seq", str(seq), "--ts", str(ts), "--import-wh", str(imp),
            "--export-wh", str(exp), cwd=tmp_path,
        )
    ).stdout.strip()  # fmt: skip


def test_sign_a_reading_and_watch_the_credit_arrive(tmp_path: Path) -> None:
    server = start_platform(tmp_path)
    try:
        resident, device = enrol_with_meter(tmp_path, server)
        now = int(time.time())
        registers = [(now - 200, 1_000, 5_000), (now - 100, 1_040, 5_600), (now, 1_070, 6_350)]
        readings = [
            sign_reading(tmp_path, device, seq, *registers[seq]) for seq in range(len(registers))
        ]
        posted = httpx.post(f"{server.url}/api/v1/readings", json=readings)
        assert posted.status_code == 200, posted.text
        assert [r["result"] for r in posted.json()["results"]] == ["accepted"] * 3
        again = httpx.post(f"{server.url}/api/v1/readings", json=readings[1:])
        assert [r["result"] for r in again.json()["results"]] == ["duplicate"] * 2

        tariff = load_tariff()
        points = Fraction(0)
        for (start, _, before), (_, _, after) in itertools.pairwise(registers):
            points += (after - before) * tariff.points_rate(tariff.window_at(start))
        carbon = (6_350 - 5_000) * tariff.carbon_factor("meter").g_per_wh
        energy = resident.get("/api/v1/me/energy").json()
        assert energy["totals"] == {
            "exported_wh": 1_350,
            "imported_wh": 70,
            "carbon_g": math.floor(carbon),
            "credit_milli": math.floor(points),
        }
        assert energy["devices"][0]["seq"] == 2
        wallets = {w["ledger"]: w["balance"] for w in resident.get("/api/v1/me").json()["wallets"]}
        assert wallets["CREDIT"] == math.floor(points) > 0
        assert wallets["CARBON"] == math.floor(carbon) == 1_162
        assert wallets["ENERGY"] == 1_350 - 70
    finally:
        server.stop()


def test_a_meter_gone_silent_is_credited_by_the_sweep(tmp_path: Path) -> None:
    # The shipped tariff with a one-second gap horizon, for the server and the CLI alike.
    shipped = (Path(cityshare_package.__file__).parent / "data" / "tariffs.toml").read_text()
    assert "gap_horizon_s = 21600" in shipped
    (tmp_path / "tariffs.toml").write_text(
        shipped.replace("gap_horizon_s = 21600", "gap_horizon_s = 1")
    )
    env = {
        "CITYSHARE_TARIFFS_PATH": str(tmp_path / "tariffs.toml"),
        "CITYSHARE_READING_SWEEP_SECONDS": "0",  # only the command below sweeps
    }
    server = start_platform(tmp_path, env)
    try:
        resident, device = enrol_with_meter(tmp_path, server)
        now = int(time.time())
        lost_in_between = [
            sign_reading(tmp_path, device, 0, now - 200, 0, 5_000),
            sign_reading(tmp_path, device, 2, now - 100, 0, 5_600),  # 1 never comes
        ]
        posted = httpx.post(f"{server.url}/api/v1/readings", json=lost_in_between)
        assert [r["result"] for r in posted.json()["results"]] == ["accepted"] * 2
        assert resident.get("/api/v1/me/energy").json()["totals"]["exported_wh"] == 0

        time.sleep(1.5)  # the reading after the gap waits out the horizon
        db = ["--db", f"sqlite:///{server.db}"]
        swept = ok(cityshare("energy", "sweep", *db, "--json", cwd=tmp_path, env=env))
        tariff = load_tariff()
        assert json.loads(swept.stdout) == {
            "devices": 1, "intervals": 1, "import_wh": 0, "export_wh": 600,
            "carbon_g": math.floor(600 * tariff.carbon_factor("meter").g_per_wh),
            "credit_milli": math.floor(600 * tariff.points_rate(tariff.window_at(now - 200))),
        }  # fmt: skip
        assert resident.get("/api/v1/me/energy").json()["totals"]["exported_wh"] == 600
        again = ok(cityshare("energy", "sweep", *db, cwd=tmp_path, env=env))
        assert again.stdout.startswith("0 silent devices swept")
    finally:
        server.stop()


def test_device_commands_explain_bad_input(tmp_path: Path) -> None:
    ok(cityshare("device", "keygen", "--out", "k", cwd=tmp_path))
    again = cityshare("device", "keygen", "--out", "k", cwd=tmp_path)
    assert again.returncode == 2
    assert "cannot create k" in again.stderr
    (tmp_path / "junk").write_text("not a key\n")
    junk = cityshare(
        "device", "sign-reading", "--key", "junk", "--device", "dev-abcdefghijklmnop",
        "--seq", "0", "--import-wh", "0", "--export-wh", "0", cwd=tmp_path,
    )  # fmt: skip
    assert junk.returncode == 2
    assert "not a device key" in junk.stderr
    bad_device = cityshare(
        "device", "sign-reading", "--key", "k", "--device", "meter-1",
        "--seq", "0", "--import-wh", "0", "--export-wh", "0", cwd=tmp_path,
    )  # fmt: skip
    assert bad_device.returncode == 2
    assert "device id" in bad_device.stderr
