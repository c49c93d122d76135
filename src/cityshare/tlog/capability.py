"""The audit log: its repository, witnesses' cosignatures and the public log API."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from cityshare.kernel.capability import Capability, CommandHandler
from cityshare.tlog import commands, handlers
from cityshare.tlog.repo import LogRepository

if TYPE_CHECKING:
    from fastapi import APIRouter


def _handlers(platform: Any) -> Mapping[type, CommandHandler]:
    return {
        commands.AddCosignatures: functools.partial(
            handlers.add_cosignatures,
            log_verifier=platform.log_signer.verifier,
            witnesses=platform.witnesses,
        ),
    }


def _routers() -> Sequence[APIRouter]:
    from cityshare.tlog.api import router

    return [router]


CAPABILITY = Capability(
    "audit-log",
    repositories={"log": lambda conn, _: LogRepository(conn)},
    handlers=_handlers,
    routers=_routers,
)
