"""The audit log under /api/v1/log, modelled on Certificate Transparency (RFC 6962 §4).

Checkpoints, the verifier key and proofs are hashes and signatures only, so anyone may fetch
them. Entries are the records themselves (who paid whom), so only the audit purpose (auditors,
regulators, administrators) reads them, and each read is recorded for the residents it names.
Witnesses post their cosignatures of checkpoints without a token: the signature of a
configured witness key is the credential.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from cityshare.api.body_limit import read_at_most
from cityshare.api.deps import PlatformDep, PrincipalDep
from cityshare.api.errors import ApiError
from cityshare.api.responses import error_responses, json_error_responses
from cityshare.identity.access import ReadRefused
from cityshare.identity.access_api import read_refused
from cityshare.ledger.model import MAX_INT
from cityshare.tlog import commands
from cityshare.tlog import handlers as audit_log

router = APIRouter(prefix="/api/v1/log", tags=["audit log"])

Size = Annotated[int, Query(ge=0, le=MAX_INT)]
#: A tree size a proof is about: the empty tree has no proofs.
TreeSize = Annotated[int, Query(ge=1, le=MAX_INT)]
NOTE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {}}, "description": "A C2SP signed note"}
}


class EntriesOut(BaseModel):
    start: int = Field(description="Index of the first entry returned.")
    entries: list[str] = Field(description="Leaf data, base64; see `cityshare.tlog.entries`.")


class ProofOut(BaseModel):
    proof: list[str] = Field(description="Hashes, base64, in RFC 9162 order.")


class CosignaturesOut(BaseModel):
    size: int = Field(description="Tree size of the cosigned checkpoint.")
    accepted: list[str] = Field(description="Witnesses whose cosignature was verified and kept.")


#: A checkpoint note with a hundred signature lines is about 12 KiB.
MAX_COSIGNED_NOTE_BYTES = 16 * 1024


def _b64(items: list[bytes]) -> list[str]:
    return [base64.b64encode(item).decode() for item in items]


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint (C2SP tlog-checkpoint), with witness cosignatures",
    responses=NOTE,
)
def checkpoint(platform: PlatformDep) -> PlainTextResponse:
    view = audit_log.latest_checkpoint(platform.uow(), platform.log_signer)
    return PlainTextResponse(view.note)


@router.get(
    "/checkpoints/{size}",
    response_class=PlainTextResponse,
    summary="The checkpoint the log signed at this size, with its cosignatures",
    description="The note as text/plain; like every error, a size the log never signed a "
    "checkpoint at (404 `not_found`) or a size below 1 (422) is answered as JSON.",
    responses={**NOTE, **json_error_responses(404, 422)},
)
def checkpoint_at(
    platform: PlatformDep, size: Annotated[int, Path(ge=1, le=MAX_INT)]
) -> PlainTextResponse:
    view = audit_log.checkpoint_at(platform.uow(), size)
    if view is None:
        raise ApiError(404, "not_found", f"the log signed no checkpoint at size {size}")
    return PlainTextResponse(view.note)


@router.get(
    "/key",
    response_class=PlainTextResponse,
    summary="The log's verifier key (signed-note vkey)",
    responses={200: {"content": {"text/plain": {}}}},
)
def key(platform: PlatformDep) -> PlainTextResponse:
    return PlainTextResponse(platform.log_signer.verifier.vkey + "\n")


@router.get(
    "/entries",
    response_model=EntriesOut,
    summary="Entries [start, end), at most 1000 per call (the audit purpose; recorded)",
    description="`end` must be greater than `start`, and `start` within the log as it stands "
    "(fewer entries come back when the log ends sooner); otherwise 422 `out_of_range`.",
    responses=error_responses(401, 403, 422),
)
def entries(
    platform: PlatformDep,
    principal: PrincipalDep,
    start: Size,
    end: Annotated[int, Query(ge=1, le=MAX_INT, description="Exclusive.")],
) -> EntriesOut:
    # Entries are the records themselves (who enrolled, who paid whom): an auditor's read.
    try:
        data = platform.personal_data.log_entries(principal, start, end)
    except ReadRefused as exc:
        raise read_refused(exc) from exc
    except audit_log.LogRangeError as exc:
        raise ApiError(422, "out_of_range", str(exc)) from exc
    return EntriesOut(start=start, entries=_b64(data))


@router.get(
    "/proof/inclusion",
    response_model=ProofOut,
    summary="Inclusion proof of leaf `index` in the tree of `size`",
    description="Needs `index < size <= ` the log's current size; otherwise 422 `out_of_range`.",
    responses=error_responses(422),
)
def inclusion(platform: PlatformDep, index: Size, size: TreeSize) -> ProofOut:
    try:
        proof = audit_log.inclusion_proof(platform.uow(), index, size)
    except audit_log.LogRangeError as exc:
        raise ApiError(422, "out_of_range", str(exc)) from exc
    return ProofOut(proof=_b64(proof))


@router.get(
    "/proof/consistency",
    response_model=ProofOut,
    summary="Consistency proof between the trees of sizes `first` and `second`",
    description="Needs `first <= second <= ` the log's current size; otherwise 422 "
    "`out_of_range`.",
    responses=error_responses(422),
)
def consistency(platform: PlatformDep, first: TreeSize, second: TreeSize) -> ProofOut:
    try:
        proof = audit_log.consistency_proof(platform.uow(), first, second)
    except audit_log.LogRangeError as exc:
        raise ApiError(422, "out_of_range", str(exc)) from exc
    return ProofOut(proof=_b64(proof))


@router.post(
    "/cosignatures",
    response_model=CosignaturesOut,
    summary="Add witness cosignatures (C2SP tlog-cosignature) to a checkpoint the log signed",
    description="The body (text/plain, at most 16 KiB) is the checkpoint note as the log "
    "signed it, carrying one or more witness signature lines. Lines from witness keys in "
    "`CITYSHARE_WITNESS_KEYS` are verified and kept (one per witness and size) and then served "
    "with the checkpoint; other lines are ignored. No token: the signature is the credential.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    responses=error_responses(413, 422),
)
async def add_cosignatures(platform: PlatformDep, request: Request) -> CosignaturesOut:
    body = await read_at_most(request, MAX_COSIGNED_NOTE_BYTES, "a cosigned checkpoint")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(422, "cosignature_rejected", "the body is not UTF-8 text") from exc
    try:
        added = await run_in_threadpool(platform.bus.handle, commands.AddCosignatures(note=text))
    except audit_log.CosignatureRejected as exc:
        raise ApiError(422, "cosignature_rejected", str(exc)) from exc
    return CosignaturesOut(size=added.size, accepted=added.accepted)
