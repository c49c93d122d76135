"""The bodies every router shares: the error shape (`{"error": {"code", "message"}}`), the
OpenAPI `responses=` of each status, `/healthz`'s answer, and the strict base of request bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemResult(BaseModel):
    index: int
    id: int
    result: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    database: str


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable, machine-readable reason, e.g. `transfers_rejected`.")
    message: str
    details: list[dict[str, Any]] | None = Field(
        None, description="For invalid requests: where and what, one entry per problem."
    )
    results: list[ItemResult] | None = Field(
        None, description="For rejected batches: the items that failed and why."
    )


class ErrorOut(BaseModel):
    """Every error the API answers has this shape."""

    error: ErrorDetail


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "Malformed JSON",
        401: "Missing, expired or forged bearer token",
        403: "Your role or purposes do not allow this",
        404: "Not found",
        409: "Conflicts with what exists (an assertion used twice, a key in use)",
        413: "Batch or body too large",
        422: "Invalid request, or a rejected batch (nothing was written)",
        503: "Not configured or database unavailable",
    }
    return {s: {"model": ErrorOut, "description": descriptions[s]} for s in statuses}


def json_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`error_responses` for an operation whose success is not JSON (a text/plain note):
    FastAPI would document its errors in the success's media type, but errors are always
    JSON. (ErrorOut is in the document's components through every other operation.)"""
    json_error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
    return {
        s: {"description": r["description"], "content": json_error}
        for s, r in error_responses(*statuses).items()
    }
