"""Billing's amendment of the published OpenAPI document (see `api/openapi.py`).

A price list prices exactly the windows of the configured tariff, which only the running
platform knows, so its schema is completed here from the platform's tariff.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cityshare.billing.model import MAX_PAISE_PER_KWH
from cityshare.ledger.model import MAX_INT


def price_list_schema(spec: dict[str, Any], windows: Sequence[str]) -> None:
    """A price list's `prices` names each window of the tariff, paise per kWh, nothing else."""
    schema = spec.get("components", {}).get("schemas", {}).get("PriceListIn")
    if schema is None:
        return
    prices = schema["properties"]["prices"]
    prices.update(
        type="object",
        properties={
            w: {"type": "integer", "minimum": 0, "maximum": MAX_PAISE_PER_KWH} for w in windows
        },
        required=list(windows),
        additionalProperties=False,
    )
    schema["properties"]["effective_from"].update(
        anyOf=[{"type": "integer", "minimum": 0, "maximum": MAX_INT}, {"type": "null"}]
    )
