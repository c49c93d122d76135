"""Bodies of the organisations API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cityshare.api.responses import Strict
from cityshare.identity.handlers import OrganisationData
from cityshare.identity.model import OrganisationRow
from cityshare.identity.organisations import NAME_RE, OrgKind
from cityshare.identity.schemas import DeviceOut, WalletOut, iso


class OrganisationIn(Strict):
    """An operator names its domain; a provider or community asset is of the energy domain
    (`domain` may be left out). The schema says so (`anyOf`) as the service checks it."""

    model_config = ConfigDict(
        # `\w` in the name as Python's `re` reads it, as the service does.
        regex_engine="python-re",
        json_schema_extra={
            "anyOf": [
                {
                    "required": ["domain"],
                    "properties": {
                        "kind": {"const": "operator"},
                        "domain": {"enum": ["energy", "transit", "parking"]},
                    },
                },
                {
                    "properties": {
                        "kind": {"enum": ["provider", "community"]},
                        "domain": {"enum": ["energy", None]},
                    },
                },
            ]
        }
    )

    kind: OrgKind
    name: str = Field(min_length=1, max_length=100, pattern=NAME_RE.pattern)
    domain: str | None = Field(
        None,
        description="An operator's domain: energy, transit or parking (providers and "
        "community assets are energy).",
    )


class OrganisationOut(BaseModel):
    id: int
    kind: OrgKind
    name: str
    domain: str | None
    created_at: str

    @classmethod
    def of(cls, row: OrganisationRow) -> OrganisationOut:
        return cls(
            id=row.id,
            kind=OrgKind(row.kind),
            name=row.name,
            domain=row.domain,
            created_at=iso(row.created_at),
        )


class OrganisationAccountOut(OrganisationOut):
    wallets: list[WalletOut]
    devices: list[DeviceOut]

    @classmethod
    def of(cls, data: OrganisationData) -> OrganisationAccountOut:  # type: ignore[override]
        base = OrganisationOut.of(data.organisation)
        return cls(
            **base.model_dump(),
            wallets=[WalletOut.of(a) for a in data.wallets],
            devices=[DeviceOut.of(d) for d in data.devices],
        )
