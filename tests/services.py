"""Throwaway real services for tests.

Provides a disposable PostgreSQL server (and a Mosquitto MQTT broker, `MosquittoServer`):

    with PostgresServer() as pg:
        url = pg.create_database("cityshare_test")
        engine = sqlalchemy.create_engine(url)

Each server lives in its own ``tempfile.mkdtemp()`` folder, listens on a free
loopback TCP port, trusts every local connection for the ``cityshare`` role
and is stopped (and its folder removed) when the context manager exits.

PostgreSQL refuses to run as root; when the tests run as root the server
processes are started as the ``postgres`` system user (or ``nobody``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

__all__ = [
    "MosquittoServer",
    "PostgresServer",
    "PostgresStartError",
    "find_pg_bin",
    "mosquitto_unavailable_reason",
    "postgres_unavailable_reason",
    "process_alive",
    "require_services",
]

REQUIRE_SERVICES_ENV: Final = "CITYSHARE_REQUIRE_SERVICES"
PG_SUPERUSER: Final = "cityshare"
PG_HOST: Final = "127.0.0.1"
PG_LIB_GLOB: Final = "/usr/lib/postgresql/*/bin"
INSTALL_HINT: Final = "install Debian package postgresql (or run scripts/ensure-services.sh)"

_START_TIMEOUT_S: Final = 60
_STOP_TIMEOUT_S: Final = 30
_KILL_WAIT_S: Final = 10.0
_START_ATTEMPTS: Final = 3


def require_services() -> bool:
    """True when missing services must fail tests instead of skipping them."""
    return os.environ.get(REQUIRE_SERVICES_ENV) == "1"


def needs(service: str, unavailable: str | None) -> None:
    """Go on when `service` is here (`unavailable` is None); else skip with the reason, or fail
    when CITYSHARE_REQUIRE_SERVICES=1 (CI), where a missing service is a failure."""
    if unavailable is None:
        return
    if require_services():
        pytest.fail(f"{service} is required ({REQUIRE_SERVICES_ENV}=1): {unavailable}")
    pytest.skip(unavailable)


def _version_key(bin_dir: str) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin`` (numeric, not lexical)."""
    version = Path(bin_dir).parent.name
    return tuple(int(part) for part in re.findall(r"\d+", version))


def find_pg_bin(name: str) -> str | None:
    """Locate a PostgreSQL program: PATH first, then the highest Debian version."""
    found = shutil.which(name)
    if found is not None:
        return found
    for bin_dir in sorted(glob.glob(PG_LIB_GLOB), key=_version_key, reverse=True):
        candidate = Path(bin_dir) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account server processes run as (only when we are root)."""

    name: str
    uid: int
    gid: int


def _service_account() -> _RunAs | None:
    """``None`` when not root; else the ``postgres`` (or ``nobody``) account."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        return _RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
    raise LookupError("running as root but neither a 'postgres' nor a 'nobody' user exists")


def postgres_unavailable_reason() -> str | None:
    """Why a :class:`PostgresServer` cannot be started here, or ``None`` if it can."""
    for program in ("initdb", "pg_ctl"):
        if find_pg_bin(program) is None:
            return f"{program} not found on PATH or in {PG_LIB_GLOB}: {INSTALL_HINT}"
    try:
        _service_account()
    except LookupError as exc:
        return f"PostgreSQL refuses to run as root and {exc}"
    return None


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((PG_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _traversable_by_others(path: str) -> bool:
    """True when every ancestor of ``path`` is searchable by other users."""
    current = Path(path).resolve()
    for directory in (current, *current.parents):
        try:
            mode = directory.stat().st_mode
        except OSError:
            return False
        if not mode & stat.S_IXOTH:
            return False
    return True


def process_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        proc_stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return True  # no /proc: trust kill(0)
    # Format: "pid (comm) state ..."; comm may contain spaces or parentheses.
    state = proc_stat.rpartition(")")[2].split()[:1]
    return state != ["Z"]


def _looks_like_postgres(pid: int) -> bool:
    """Guard against signalling a recycled PID that is no longer our postmaster."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc to check against: trust the recorded PID
    return b"postgres" in cmdline


class PostgresStartError(RuntimeError):
    """initdb or pg_ctl failed; the message includes the tail of their output."""


class PostgresServer:
    """A disposable PostgreSQL server in a fresh temporary folder.

    Use as a context manager. ``url_for(dbname)`` returns a SQLAlchemy URL
    (``postgresql+psycopg://cityshare@127.0.0.1:PORT/DBNAME``).
    """

    def __init__(self) -> None:
        reason = postgres_unavailable_reason()
        if reason is not None:
            raise PostgresStartError(reason)
        initdb = find_pg_bin("initdb")
        assert initdb is not None  # checked by postgres_unavailable_reason()
        self._initdb = initdb
        self._pg_ctl = self._sibling_or_lookup(initdb, "pg_ctl")
        self._run_as = _service_account()
        self._base_dir: Path | None = None
        self._port: int | None = None
        self._pid: int | None = None

    # -- public API -------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        """The temporary folder holding data, socket dir and log."""
        if self._base_dir is None:
            raise RuntimeError("PostgresServer has not been started")
        return self._base_dir

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.base_dir / "postgres.log"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("PostgresServer has not been started")
        return self._port

    @property
    def pid(self) -> int | None:
        """PID of the postmaster this object started (``None`` if not running)."""
        return self._pid

    @property
    def admin_url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` maintenance database."""
        return self.url_for("postgres")

    def url_for(self, dbname: str) -> str:
        """SQLAlchemy URL for ``dbname`` on this server."""
        return f"postgresql+psycopg://{PG_SUPERUSER}@{PG_HOST}:{self.port}/{dbname}"

    def conninfo_for(self, dbname: str) -> str:
        """libpq connection string for ``dbname`` (for direct psycopg use)."""
        return make_conninfo(host=PG_HOST, port=self.port, user=PG_SUPERUSER, dbname=dbname)

    def create_database(self, name: str, template: str | None = None) -> str:
        """``CREATE DATABASE name [TEMPLATE template]``; returns its URL."""
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template is not None:
            query = sql.SQL("{} TEMPLATE {}").format(query, sql.Identifier(template))
        with psycopg.connect(self.conninfo_for("postgres"), autocommit=True) as conn:
            conn.execute(query)
        return self.url_for(name)

    def is_running(self) -> bool:
        return self._pid is not None and process_alive(self._pid)

    def start(self) -> None:
        if self._base_dir is not None:
            raise RuntimeError("PostgresServer already started")
        self._base_dir = self._make_base_dir()
        try:
            self._initdb_cluster()
            self._start_postmaster()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the server this object started and remove its folder."""
        try:
            self._stop_postmaster()
        finally:
            if self._base_dir is not None:
                shutil.rmtree(self._base_dir, ignore_errors=True)
                self._base_dir = None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals --------------------------------------------------------

    @staticmethod
    def _sibling_or_lookup(initdb: str, name: str) -> str:
        """Prefer ``name`` from the same install as ``initdb`` (same major version)."""
        sibling = Path(initdb).resolve().parent / name
        if sibling.is_file() and os.access(sibling, os.X_OK):
            return str(sibling)
        found = find_pg_bin(name)
        if found is None:
            raise PostgresStartError(f"{name} not found: {INSTALL_HINT}")
        return found

    def _make_base_dir(self) -> Path:
        parent: str | None = None
        if self._run_as is not None and not _traversable_by_others(tempfile.gettempdir()):
            # The service account must be able to reach the folder.
            parent = "/tmp"
        base_dir = Path(tempfile.mkdtemp(prefix="cityshare-pg-", dir=parent))
        base_dir.chmod(0o755)
        sock_dir = base_dir / "sock"
        sock_dir.mkdir(mode=0o700)
        if self._run_as is not None:
            for path in (base_dir, sock_dir):
                os.chown(path, self._run_as.uid, self._run_as.gid)
        return base_dir

    def _env(self) -> dict[str, str]:
        # Drop PG* variables (PGDATA, PGPORT, PGHOST, ...) so the caller's
        # environment cannot redirect the throwaway server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        if self._run_as is not None:
            env["HOME"] = str(self.base_dir)
            env["USER"] = env["LOGNAME"] = self._run_as.name
        return env

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL program, as the service account when we are root."""
        if self._run_as is None:
            return subprocess.run(
                args,
                cwd=self.base_dir,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        return subprocess.run(
            args,
            cwd=self.base_dir,
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            user=self._run_as.uid,
            group=self._run_as.gid,
            extra_groups=[],
        )

    def _initdb_cluster(self) -> None:
        common = [
            self._initdb,
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            PG_SUPERUSER,
            "--encoding=UTF8",
        ]
        result: subprocess.CompletedProcess[str] | None = None
        for locale_args in (["--locale=C.UTF-8"], ["--no-locale"]):
            result = self._run([*common, *locale_args], timeout=120)
            if result.returncode == 0:
                return
            shutil.rmtree(self.data_dir, ignore_errors=True)
        assert result is not None
        raise PostgresStartError(
            f"initdb failed (exit {result.returncode}):\n{_tail(result.stdout + result.stderr)}"
        )

    def _start_postmaster(self) -> None:
        failure = ""
        for _attempt in range(_START_ATTEMPTS):
            port = _free_loopback_port()
            options = " ".join(
                [
                    f"-p {port}",
                    f"-k {shlex.quote(str(self.socket_dir))}",
                    f"-c listen_addresses={PG_HOST}",
                    "-c fsync=on",
                ]
            )
            result = self._run(
                [
                    self._pg_ctl,
                    "-D",
                    str(self.data_dir),
                    "-o",
                    options,
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(_START_TIMEOUT_S),
                    "start",
                ],
                timeout=_START_TIMEOUT_S + 30,
            )
            self._pid = self._read_postmaster_pid()
            if result.returncode == 0 and self._pid is not None:
                self._port = port
                return
            log = self._read_log()
            failure = (
                f"pg_ctl start failed (exit {result.returncode}):\n"
                f"{_tail(result.stdout + result.stderr)}\n--- server log ---\n{_tail(log)}"
            )
            self._stop_postmaster()
            if "could not bind" not in log and "Address already in use" not in log:
                break  # not a port race: retrying will not help
        raise PostgresStartError(failure)

    def _read_postmaster_pid(self) -> int | None:
        try:
            first_line = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first_line.strip())
        except (OSError, ValueError):
            return None

    def _read_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def _stop_postmaster(self) -> None:
        """Stop only the postmaster this object started."""
        if self._base_dir is None:
            return
        pid = self._pid if self._pid is not None else self._read_postmaster_pid()
        if pid is None or not process_alive(pid):
            self._pid = None
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            self._run(
                [
                    self._pg_ctl,
                    "-D",
                    str(self.data_dir),
                    "stop",
                    "-m",
                    "fast",
                    "-w",
                    "-t",
                    str(_STOP_TIMEOUT_S),
                ],
                timeout=_STOP_TIMEOUT_S + 10,
            )
        if process_alive(pid) and _looks_like_postgres(pid):
            for sig in (signal.SIGQUIT, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
                if _wait_for_exit(pid, _KILL_WAIT_S):
                    break
        self._pid = None


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


# -- Mosquitto -------------------------------------------------------------------------------

MOSQUITTO_HINT: Final = "install Debian package mosquitto (or run scripts/ensure-services.sh)"


def find_mosquitto() -> str | None:
    """The broker program: PATH first, then /usr/sbin (where Debian puts it)."""
    found = shutil.which("mosquitto")
    if found is not None:
        return found
    candidate = Path("/usr/sbin/mosquitto")
    return str(candidate) if candidate.is_file() and os.access(candidate, os.X_OK) else None


def mosquitto_unavailable_reason() -> str | None:
    """Why a :class:`MosquittoServer` cannot be started here, or ``None`` if it can."""
    if find_mosquitto() is None:
        return f"mosquitto not found on PATH or in /usr/sbin: {MOSQUITTO_HINT}"
    return None


class MosquittoServer:
    """A disposable Mosquitto broker on a free loopback port, in a fresh temporary folder.

    Anonymous clients are allowed; sessions and queued messages are persisted in the folder,
    so :meth:`restart` (same port) keeps them. Queues and in-flight windows are unbounded, so
    a storm of QoS 1 messages for a slow subscriber is held, never dropped. Only the process
    this object started is ever signalled.
    """

    def __init__(self) -> None:
        reason = mosquitto_unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        program = find_mosquitto()
        assert program is not None
        self._program = program
        self._base_dir: Path | None = None
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("MosquittoServer has not been started")
        return self._port

    @property
    def url(self) -> str:
        return f"mqtt://{PG_HOST}:{self.port}"

    @property
    def base_dir(self) -> Path:
        if self._base_dir is None:
            raise RuntimeError("MosquittoServer has not been started")
        return self._base_dir

    @property
    def log_file(self) -> Path:
        return self.base_dir / "mosquitto.log"

    def start(self) -> None:
        if self._base_dir is not None:
            raise RuntimeError("MosquittoServer already started")
        parent = None
        if os.geteuid() == 0 and not _traversable_by_others(tempfile.gettempdir()):
            parent = "/tmp"  # the broker's own user must reach the folder
        self._base_dir = Path(tempfile.mkdtemp(prefix="cityshare-mqtt-", dir=parent))
        try:
            failure = ""
            for _attempt in range(_START_ATTEMPTS):
                failure = self._launch(_free_loopback_port())
                if not failure:
                    return
            raise RuntimeError(f"mosquitto did not start:\n{failure}")
        except BaseException:
            self.close()
            raise

    def stop(self) -> None:
        """Stop the broker (it saves its sessions) and keep its folder, for :meth:`restart`."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=_KILL_WAIT_S)

    def restart(self) -> None:
        """Stop and start again on the same port, with the persisted sessions."""
        self.stop()
        failure = self._launch(self.port)
        if failure:
            raise RuntimeError(f"mosquitto did not restart:\n{failure}")

    def close(self) -> None:
        try:
            self.stop()
        finally:
            if self._base_dir is not None:
                shutil.rmtree(self._base_dir, ignore_errors=True)
                self._base_dir = None

    def __enter__(self) -> MosquittoServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _launch(self, port: int) -> str:
        """Start the broker on ``port``; "" once it accepts connections, else why not."""
        config = self.base_dir / "mosquitto.conf"
        lines = [
            f"listener {port} {PG_HOST}",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.base_dir}/",
            "autosave_interval 60",
            # Unbounded queues and windows: a test's storm must be held, never dropped.
            "max_inflight_messages 0",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            f"log_dest file {self.log_file}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # Mosquitto started as root drops to this user, who must own the folder.
            user = "mosquitto"
            try:
                entry = pwd.getpwnam(user)
                os.chown(self.base_dir, entry.pw_uid, entry.pw_gid)
            except KeyError:
                user = "root"
            lines.append(f"user {user}")
        config.write_text("\n".join(lines) + "\n")
        log_start = len(self._read_log())
        with (self.base_dir / "stderr.log").open("ab") as stderr:
            proc = subprocess.Popen(
                [self._program, "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                cwd=self.base_dir,
            )
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                stderr_text = (self.base_dir / "stderr.log").read_text(errors="replace")
                return f"{stderr_text}\n{self._read_log()[log_start:]}".strip() or "exited"
            try:
                with socket.create_connection((PG_HOST, port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait(timeout=_KILL_WAIT_S)
                    return f"no connection on port {port} in {_START_TIMEOUT_S} s"
                time.sleep(0.05)
        self._proc = proc
        self._port = port
        return ""

    def _read_log(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""
