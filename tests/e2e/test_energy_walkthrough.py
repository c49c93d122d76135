"""The README's energy walkthrough, as real processes: a resident registers a meter whose key
`cityshare device keygen` made, the meter's readings are signed with `cityshare device
sign-reading` and posted, and the credits arrive in the resident's wallet and energy view."""

from __future__ import annotations

import itertools
import math
import re
import time
from fractions import Fraction
from pathlib import Path

import httpx

from cityshare.domain.energy import load_tariff
from processes import Server, cityshare, ok


def test_sign_a_reading_and_watch_the_credit_arrive(tmp_path: Path) -> None:
    issuer = ok(cityshare("issuer", "init", "--dir", "issuer", cwd=tmp_path)).stdout
    issuer_key = re.search(r"CITYSHARE_ISSUER_KEYS=(\S+)", issuer)
    assert issuer_key is not None
    (tmp_path / "platform").mkdir()
    server = Server(
        tmp_path / "platform", token="energy-admin", env={"CITYSHARE_ISSUER_KEYS": issuer_key[1]}
    )
    server.start()
    try:
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

        now = int(time.time())
        registers = [(now - 200, 1_000, 5_000), (now - 100, 1_040, 5_600), (now, 1_070, 6_350)]
        readings = [
            ok(
                cityshare(
                    "device", "sign-reading", "--key", "meter.key", "--device", device,
                    "--seq", str(seq), "--ts", str(ts), "--import-wh", str(imp),
                    "--export-wh", str(exp), cwd=tmp_path,
                )
            ).stdout.strip()
            for seq, (ts, imp, exp) in enumerate(registers)
        ]  # fmt: skip
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
