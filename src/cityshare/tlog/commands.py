"""Commands of the audit log."""

from __future__ import annotations

from dataclasses import dataclass

from cityshare.kernel.messages import Command


@dataclass(frozen=True, slots=True)
class AddCosignatures(Command):
    """Keep the witness cosignatures carried by `note`, a checkpoint the log itself signed."""

    note: str
