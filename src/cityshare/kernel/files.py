"""Owner-only SQLite files: a database holds records about residents, so only its owner reads it.

SQLite creates a new database with mode 0644 (less the umask): readable by everyone on the
machine, while the keys beside it are 0600 in a 0700 folder. Its `-wal` and `-shm` files (and a
rollback `-journal`) take the mode of the database file itself, so creating that one file 0600
before SQLite opens it makes all of them owner-only.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

#: The files SQLite keeps beside a database, which get the database's mode.
SIDE_FILES = ("-wal", "-shm", "-journal")


def private_database(path: Path) -> None:
    """Make `path` an owner-only file (0600) before SQLite opens it.

    A missing file is created empty (SQLite then makes a new database in it). An existing
    database that its group or others may read is tightened to owner-only, with its side files,
    and a warning says so; one that belongs to another user is left as it is, with a warning. A
    missing folder is left for SQLite to report.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        _tighten(path)
    except OSError:
        return  # no folder, not writable, ...: SQLite's own error says it best
    else:
        os.close(fd)


def _tighten(path: Path) -> None:
    for file in (path, *(path.with_name(path.name + side) for side in SIDE_FILES)):
        try:
            info = file.stat()
        except OSError:
            continue
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISREG(info.st_mode) or not mode & 0o077:
            continue
        if info.st_uid != os.geteuid():
            log.warning(
                "%s may be read by others (mode %04o) and is not ours to change; make it 0600",
                file,
                mode,
            )
            continue
        try:
            os.chmod(file, mode & 0o700)
        except OSError as exc:
            log.warning("%s may be read by others (mode %04o): %s", file, mode, exc.strerror)
            continue
        log.warning(
            "%s could be read by others (mode %04o); made it owner-only (%04o)",
            file,
            mode,
            mode & 0o700,
        )
