"""The `Idempotency-Key` request header (IETF draft-ietf-httpapi-idempotency-key-header) for
writes that are not idempotent by themselves (issuing and transferring shares, registering
devices).

A route takes `idempotency: IdempotencyDep` and answers with `idempotency.run(platform,
command, body, answer)`: without the header that is the usual bus call and answer; with it,
the bus's idempotency middleware (kernel/idempotency.py) runs the command at most once for
that key and principal, and a retry gets the first answer again, byte for byte, with
`Idempotent-Replayed: true`. A key that is not 1-255 printable ASCII is a 400; one used
before for another request a 422.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request, Response
from pydantic import BaseModel

from cityshare.api.deps import PrincipalDep
from cityshare.api.errors import ApiError
from cityshare.api.responses import ErrorOut, error_responses
from cityshare.bootstrap import Platform
from cityshare.kernel import idempotency as service
from cityshare.kernel.messages import Command

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"

#: Refusals of a key, by code (the draft: 400 for a malformed key, 422 for a reused one; 422
#: too for a key whose stored answer fails its seal, which is neither replayed nor run again).
STATUSES = {
    "invalid_idempotency_key": 400,
    "idempotency_key_reused": 422,
    "idempotency_key_unverifiable": 422,
}

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Idempotency:
    """The request's `Idempotency-Key` (if any), and what scopes and fingerprints it."""

    keys: tuple[str, ...]
    principal: str
    method: str
    path: str
    #: The route's success status (what a first answer is sent with).
    status: int

    def run(
        self,
        platform: Platform,
        command: Command,
        body: BaseModel,
        answer: Callable[[Any, Any], M],
    ) -> M | Response:
        """Hand `command` to the bus and answer `answer(result, uow)` (which reads what it
        needs through `uow`, a read-only unit of work with every capability's repository, so
        typed by the route's own capability protocol). The handler's refusals propagate, as
        from `bus.handle`."""
        if not self.keys:
            return answer(platform.bus.handle(command), platform.uow())
        try:
            if len(self.keys) > 1:
                raise service.IdempotencyError(
                    "invalid_idempotency_key", f"send one {HEADER} header, not {len(self.keys)}"
                )
            request = service.keyed_request(
                self.principal, self.keys[0], self.method, self.path, body.model_dump(mode="json")
            )
            done = service.run(
                platform.bus,
                request,
                command,
                lambda result, uow: (self.status, answer(result, uow).model_dump_json()),
                retention_seconds=platform.settings.idempotency_retention_seconds,
            )
        except service.IdempotencyError as exc:
            raise ApiError(STATUSES[exc.code], exc.code, str(exc)) from exc
        return Response(
            done.body,
            status_code=done.status,
            media_type="application/json",
            headers={REPLAYED: "true"} if done.replayed else None,
        )


def get_idempotency(
    request: Request,
    principal: PrincipalDep,
    _: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="Makes this write safe to retry: send a new key (1-255 printable "
            "ASCII characters, e.g. a UUID) with each new request; the same request sent "
            f"again with the same key gets the first answer again, with `{REPLAYED}: true`, "
            "and changes nothing. Keys are yours alone and kept at least 24 hours. The same "
            "key with another request: 422. Refusals are not kept: correct the request and "
            "send it again with the same key.",
            json_schema_extra={"minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
        ),
    ] = None,
) -> Idempotency:
    route = request.scope.get("route")
    return Idempotency(
        keys=tuple(request.headers.getlist(HEADER)),
        principal=principal.name,
        method=request.method,
        path=request.url.path,
        status=getattr(route, "status_code", None) or 200,
    )


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]


def idempotent_responses(success: int, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a route taking `Idempotency-Key`: the error statuses it answers
    besides 400 and 422, and the replay header on its success status."""
    responses = error_responses(*statuses)
    responses[400] = {
        "model": ErrorOut,
        "description": f"Malformed JSON, or an {HEADER} that is not 1-255 printable ASCII "
        "characters (`invalid_idempotency_key`)",
    }
    responses[422] = {
        "model": ErrorOut,
        "description": f"Invalid request, or an {HEADER} already used for a different "
        "request (`idempotency_key_reused`), or one whose stored answer fails its integrity "
        "check (`idempotency_key_unverifiable`: neither replayed nor run again): nothing was "
        "written",
    }
    responses[success] = {
        "description": f"Done; or, for an {HEADER} sent before with this request, the first "
        "answer again (nothing new happened)",
        "headers": {
            REPLAYED: {
                "description": "`true` when this is the stored answer to an earlier request "
                f"with the same {HEADER}",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
    }
    return dict(sorted(responses.items(), key=lambda item: int(item[0])))
