"""What the README's walkthroughs make in the repository root is never committed by accident,
and the ignore rules never hide the code."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

GITIGNORE = Path(__file__).resolve().parents[2] / ".gitignore"

#: Made by the walkthroughs when run from the repository root, as the README says.
MADE_BY_WALKTHROUGHS = [
    "cityshare.db",
    "cityshare.db-wal",
    "cityshare.db-shm",
    "keys/log.skey",
    "keys/pseudonym.secret",
    "keys/seal.secret",
    "issuer/issuer.skey",
    "issuer/pseudonym.secret",
    "issuer/issuer.db",
    "twin/witness.skey",
    "twin/replica.db",
    "twin/checkpoint",
    "meter.key",
    "array.key",
]
#: The code and documentation that share those names.
KEPT = ["src/cityshare/issuer/store.py", "src/cityshare/twin/replica.py", "README.md"]


def ignored(repo: Path, paths: list[str]) -> set[str]:
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr  # 1: none of them is ignored
    return set(result.stdout.split())


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    assert shutil.which("git"), "git is needed to read the ignore rules as git does"
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(GITIGNORE, tmp_path / ".gitignore")
    for path in MADE_BY_WALKTHROUGHS + KEPT:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).touch()
    return tmp_path


def test_the_files_the_walkthroughs_make_are_ignored(repo: Path) -> None:
    assert ignored(repo, MADE_BY_WALKTHROUGHS) == set(MADE_BY_WALKTHROUGHS)


def test_the_code_with_the_same_names_is_not_ignored(repo: Path) -> None:
    assert ignored(repo, KEPT) == set()
