"""The README's trust walkthrough, as real processes: an issuer enrols a resident, the resident
registers a device, an auditor's twin syncs and cosigns the log, and the national id the
issuer was given appears nowhere on the platform: not in its database files, not in its logs.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cityshare.identity.model import verhoeff_check_digit
from processes import Server, cityshare, ok

NATIONAL_ID = "49731" + "852064" + verhoeff_check_digit("49731852064")  # Aadhaar-shaped


def test_enrol_register_a_device_and_verify_with_the_twin(tmp_path: Path) -> None:
    issuer = ok(cityshare("issuer", "init", "--dir", "issuer", cwd=tmp_path)).stdout
    issuer_key = re.search(r"CITYSHARE_ISSUER_KEYS=(\S+)", issuer)
    twin = ok(cityshare("twin", "init", "--dir", "twin", cwd=tmp_path)).stdout
    witness_key = re.search(r"CITYSHARE_WITNESS_KEYS=(\S+)", twin)
    assert issuer_key is not None
    assert witness_key is not None

    platform = tmp_path / "platform"
    platform.mkdir()
    server = Server(
        platform,
        token="walkthrough-admin",
        env={
            "CITYSHARE_ISSUER_KEYS": issuer_key.group(1),
            "CITYSHARE_WITNESS_KEYS": witness_key.group(1),
            "CITYSHARE_LOG_LEVEL": "DEBUG",  # the most the platform ever writes to its log
        },
    )
    server.start()
    try:
        # The resident asks the issuer for an assertion (the national id goes in on stdin).
        assertion = ok(
            cityshare(
                "issuer",
                "enroll",
                "--national-id",
                "-",
                "--sector",
                "cityshare",
                "--attr",
                "ward=12",
                "--attr",
                "age_band=30-39",
                "--dir",
                "issuer",
                cwd=tmp_path,
                stdin=NATIONAL_ID + "\n",
            )
        ).stdout.strip()
        enrolled = httpx.post(f"{server.url}/api/v1/residents", json={"assertion": assertion})
        assert enrolled.status_code == 201, enrolled.text
        resident = server.api(enrolled.json()["token"])

        public = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
        device = resident.post(
            "/api/v1/me/devices",
            json={
                "kind": "meter",
                "label": "rooftop",
                "public_key": base64.urlsafe_b64encode(public).decode().rstrip("="),
            },
        )
        assert device.status_code == 201, device.text

        checkpoint = httpx.get(f"{server.url}/api/v1/log/checkpoint").text
        assert checkpoint.splitlines()[1] == "8"  # resident, enrolment, 4 wallets, device, key

        auditor = ok(
            cityshare(
                "token",
                "issue",
                "--role",
                "auditor",
                "--purpose",
                "audit",
                "--subject",
                "city-audit",
                "--db",
                f"sqlite:///{server.db}",
                cwd=tmp_path,
            )
        ).stdout.strip()
        # Twice: the first sync's reads were recorded, and the second picks that record up.
        sync = ["twin", "sync", "--from", server.url, "--dir", "twin", "--token", auditor]
        for _ in range(2):
            ok(cityshare(*sync, cwd=tmp_path))
        ok(cityshare("twin", "verify", "--dir", "twin", cwd=tmp_path))
        cosigned = httpx.get(f"{server.url}/api/v1/log/checkpoint").text
        assert "— " in cosigned.split("\n\n", 1)[1]
        assert len(cosigned.split("\n\n", 1)[1].splitlines()) == 2  # the log's and the twin's

        # The auditor's bulk read of the log is in the resident's access log.
        seen = resident.get("/api/v1/me/access-log").json()["records"]
        assert [(r["who"], r["purpose"]) for r in seen] == [("auditor:city-audit", "audit")]
    finally:
        server.stop()

    digits = NATIONAL_ID.encode()
    spaced = " ".join([NATIONAL_ID[:4], NATIONAL_ID[4:8], NATIONAL_ID[8:]]).encode()
    checked = []
    for path in platform.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert digits not in data, f"the national id is in {path}"
            assert spaced not in data, f"the national id is in {path}"
            checked.append(path.name)
    assert {"cityshare.db", "serve.log"} <= set(checked)
