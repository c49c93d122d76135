"""The published OpenAPI document, made to say exactly what the API does.

FastAPI derives the document from the routes and their pydantic models; three things it cannot
get right by itself are corrected here, once, for every operation:

- **Exact integer bounds.** FastAPI passes the document through a model that types `minimum`
  and `maximum` as floats, so 2^63-1 was published as `9.223372036854776e+18`, which a JSON
  Schema reader takes as 9223372036854776000 (beyond the API's integers), and 2^58-1 as 2^58.
  Bounds are published as integers; a bound past 2^53 must be one of `EXACT_INTEGERS` (else
  building the document fails, so a new one cannot be published rounded).
- **Malformed JSON.** Every JSON body that does not parse is answered 400 `malformed_json`
  (see `errors.py`) before any validation, so every operation with a JSON body documents it.
- **What only the running platform knows.** Each capability may amend the document
  (`Capability.openapi`): billing names the configured tariff's windows in a price list.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from cityshare.identity.residents import MAX_PARTY_ID, ORG_ID_BASE
from cityshare.ledger.ids import PLATFORM_ID_BASE
from cityshare.ledger.model import MAX_INT

#: Integer bounds beyond a float's 53-bit precision that the API's schemas use.
EXACT_INTEGERS: tuple[int, ...] = (
    MAX_INT, -MAX_INT - 1, ORG_ID_BASE, MAX_PARTY_ID, PLATFORM_ID_BASE,
)  # fmt: skip
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}


def _exact(value: float) -> int:
    if abs(value) < 2**53:
        return int(value)
    exact = [n for n in EXACT_INTEGERS if float(n) == value]
    if len(exact) != 1:
        raise ValueError(f"an integer bound near {value!r} is not in EXACT_INTEGERS")
    return exact[0]


def exact_integer_bounds(node: Any) -> None:
    """Publish every whole-number bound as an integer, exactly (in place)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _BOUNDS and isinstance(value, float) and value.is_integer():
                node[key] = _exact(value)
            else:
                exact_integer_bounds(value)
    elif isinstance(node, list):
        for item in node:
            exact_integer_bounds(item)


def document_malformed_json(spec: dict[str, Any]) -> None:
    """Every operation that takes a JSON body documents the 400 for one that does not parse."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                operation["responses"].setdefault(
                    "400", {"description": "Malformed JSON", "content": _ERROR}
                )


def install(app: FastAPI, *, amend: Callable[[dict[str, Any]], None]) -> None:
    """Serve the corrected document at `/openapi.json` (and in `/docs`); `amend` applies the
    capabilities' own amendments."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            exact_integer_bounds(spec)
            document_malformed_json(spec)
            amend(spec)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
