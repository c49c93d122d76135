"""Reads of personal data: check the caller's purpose, then record who read what and why.

The record is written (and logged in the audit log) before the data is returned: if it cannot
be written, the caller gets an error instead of the data. A resident reading their own data
is not recorded (the access log shows who *else* looked).
"""

from __future__ import annotations

from collections.abc import Iterable

from cityshare.access.policy import Purpose, Role
from cityshare.access.tokens import Principal
from cityshare.api.deps import require_purpose
from cityshare.bootstrap import Platform
from cityshare.domain import commands


def record_reads(
    platform: Platform,
    principal: Principal,
    purpose: Purpose,
    reads: Iterable[tuple[int, str]],
) -> None:
    """`reads`: (resident id, what was read) pairs; purpose must be one the caller holds."""
    others = [
        (resident_id, what)
        for resident_id, what in reads
        if not (principal.role == Role.RESIDENT and principal.resident_id == resident_id)
    ]
    if not others:
        return
    require_purpose(principal, purpose)
    platform.bus.handle(
        commands.RecordAccess(
            [
                commands.AccessRequest(rid, principal.name, principal.role, purpose, what)
                for rid, what in dict.fromkeys(others)
            ]
        )
    )
