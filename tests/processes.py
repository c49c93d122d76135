"""Run `cityshare` as a user does: one-shot commands and a real `serve` on a free loopback port.

The server's output goes to a file in its folder (never an unread pipe, which would block a
chatty server), so a test can read what it logged.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest


def cityshare(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cityshare", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    """`cityshare serve` on SQLite in a folder of its own; restartable on the same files."""

    folder: Path
    token: str
    env: dict[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    db_name: str = "cityshare.db"
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def db(self) -> Path:
        return self.folder / self.db_name

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / "serve.log"

    def start(self) -> None:
        self.port = free_port()
        env = {**os.environ, "CITYSHARE_OPERATOR_TOKEN": self.token, **self.env}
        command = [sys.executable, "-m", "cityshare", "serve", "--port", str(self.port)]
        command += ["--db", f"sqlite:///{self.db}", *self.args]
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{self.url}/healthz", timeout=2)
                return
            except httpx.TransportError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    pytest.fail(f"serve did not come up:\n{self.log_file.read_text()}")
                time.sleep(0.2)

    def stop(self) -> int | None:
        """Stop the server; return its exit code."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.terminate()
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=30)

    def api(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=30,
        )
