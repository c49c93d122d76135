"""Idempotency keys for writes (IETF draft-ietf-httpapi-idempotency-key-header).

A client that sends a write again with the same `Idempotency-Key` (because the first answer
was lost) gets the first answer again instead of a second effect. A key is scoped to the
principal that sent it (`Principal.name`, role and subject): one principal's key never
meets another's, and a stored answer is only ever replayed to the principal it was made for.

**Exactly once.** This is bus middleware (:class:`IdempotencyMiddleware`, registered in
bootstrap; :func:`run` hands it a keyed write). On each of the bus's attempts it opens the
attempt's write transaction, takes the lock every writer takes (the ledger's write lock,
which serialises every writer), and looks the key up. Only if it is new does it run the
command's handler, *inside that same transaction*: the handler's `with uow:` joins it and its
`commit()` is deferred (see :class:`JoinedUnitOfWork`). The answer is rendered from what the
handler returned, still inside it; then the key, the request's fingerprint and the answer are
stored and everything commits at once. So an effect and its stored answer are written
together or not at all (a crash cannot leave one without the other), and a concurrent retry
waits for the lock, then finds the answer. The primary key (principal, key) is the backstop:
an insert that finds the key taken rolls its attempt back (a `ConflictError`), and the bus's
next attempt replays.

**Same key, other request.** The fingerprint is the SHA-256 of the method, the path and the
canonical JSON body; a key sent again with another fingerprint is refused
(`idempotency_key_reused`, HTTP 422 as the draft says) and nothing happens.

**What is stored.** Only answers of writes that took effect: a refusal raises, rolls back and
stores nothing, so the client may correct the request and send it again with the same key.
The body is the principal's own answer; no national id is ever in one (the platform holds
none). Entries are derived records of requests, not facts of the platform: they are not
leaves of the audit log. The effect they answered is logged when it happens, and a replay
writes nothing, so the log holds every fact exactly once whether or not a client retried.

**Sealed.** A stored answer changed in the database would be told to a retrying client as
what happened, so each row carries a seal under the platform's seal key (kernel/seals.py)
over all its fields. One whose seal fails is neither replayed nor taken as an unused key
(running the write again could do it twice): the request is refused
(`idempotency_key_unverifiable`, logged at ERROR), and `audit verify` lists the row. A seal
cannot show a row deleted: the retry of a write whose stored answer is gone runs again.

Entries are kept `retention_seconds` (at least a day) and then forgotten: each keyed write
purges a bounded batch of expired ones, and `PurgeIdempotencyKeys` purges them all.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

from cityshare.kernel import idempotency_commands as kernel_idempotency_commands
from cityshare.kernel import messages as kernel_messages
from cityshare.kernel.bus import MessageBus, Next
from cityshare.kernel.errors import ConflictError
from cityshare.kernel.idempotency_repo import IdempotencyRepository, IdempotencyRow
from cityshare.kernel.messages import Event
from cityshare.kernel.seals import BrokenSealError
from cityshare.kernel.uow import UnitOfWork

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
#: 1-255 printable ASCII characters (space to tilde).
KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
MAX_PRINCIPAL_LENGTH = 200
#: Expired keys each keyed write purges (so the table stays bounded without a sweep).
PURGE_BATCH = 100
NANOSECONDS = 1_000_000_000

#: What renders a handler's result as the answer (status, JSON text), in the transaction: it
#: is given a read-only view of it (:class:`JoinedUnitOfWork`), with every repository.
Respond = Callable[[Any, Any], tuple[int, str]]


class IdempotencyUnitOfWork(UnitOfWork, Protocol):
    """The repository the middleware and the purge use."""

    idempotency: IdempotencyRepository


class IdempotencyError(ValueError):
    """A key the platform refuses; `code` is stable, the message says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class KeyedRequest:
    """One write sent with an idempotency key, as it is matched against stored ones."""

    principal: str
    key: str
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    #: The JSON answer, byte for byte as it was first sent.
    body: str
    #: True when this is the stored answer of an earlier request (nothing happened now).
    replayed: bool


def check_key(key: str) -> str:
    if not KEY_RE.match(key):
        raise IdempotencyError(
            "invalid_idempotency_key",
            f"an Idempotency-Key is 1-{MAX_KEY_LENGTH} printable ASCII characters",
        )
    return key


def fingerprint(method: str, path: str, body: Any) -> str:
    """Hex SHA-256 of the request: method, path and the body as canonical JSON (sorted keys,
    no insignificant white space), so the same request always has the same fingerprint."""
    canonical = json.dumps(
        [method.upper(), path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def keyed_request(principal: str, key: str, method: str, path: str, body: Any) -> KeyedRequest:
    """Raises :class:`IdempotencyError` for a key that is not 1-255 printable ASCII."""
    if not principal:
        raise ValueError("a key belongs to a principal")
    if len(principal) > MAX_PRINCIPAL_LENGTH:  # stored by its hash (no role is named sha256)
        principal = "sha256:" + hashlib.sha256(principal.encode()).hexdigest()
    return KeyedRequest(principal, check_key(key), fingerprint(method, path, body))


#: The `bus.handle` context key under which a keyed write is handed to the middleware.
CONTEXT = "idempotency"


@dataclass(frozen=True, slots=True)
class Keyed:
    """A command to handle at most once under `request`'s key: what `bus.handle` is given as
    `idempotency=` for :class:`IdempotencyMiddleware`."""

    request: KeyedRequest
    respond: Respond
    retention_seconds: int


def run(
    bus: MessageBus,
    request: KeyedRequest,
    command: kernel_messages.Command,
    respond: Respond,
    *,
    retention_seconds: int,
) -> Answer:
    """Handle `command` at most once per key: the first time, run its handler and store the
    answer `respond` renders from its result in the same transaction; again, the stored
    answer (`replayed`). The handler's refusals propagate and store nothing.

    The handler must write in one `with uow:` block ending in `uow.commit()` (as every
    handler of one transaction does); one that commits nothing (it found nothing to do) gets
    its answer rendered but not stored. Raises :class:`IdempotencyError`
    (`idempotency_key_reused`) when the key was used for another request.

    The work is :class:`IdempotencyMiddleware`'s, which `bus` must have (bootstrap registers
    it): a bus without it would run the command as if no key had been sent.
    """
    if not any(isinstance(m, IdempotencyMiddleware) for m in bus.middleware):
        raise RuntimeError("this bus has no idempotency middleware to run a keyed write")
    answer = bus.handle(command, **{CONTEXT: Keyed(request, respond, retention_seconds)})
    assert isinstance(answer, Answer)
    return answer


class _KeyTakenError(ConflictError):
    """Another transaction stored the key first: this attempt rolls back, and the bus runs
    the next one, which replays."""


#: Takes the lock every writer takes first in its transaction (so writers are serialised).
WriterLock = Callable[[Any], object]


class IdempotencyMiddleware:
    """The bus middleware (kernel/bus.py) of keyed writes: a command handed to the bus with
    `idempotency=Keyed(...)` (see :func:`run`) is run at most once per key, and the bus
    returns its :class:`Answer`; any other passes through untouched.

    On each attempt it opens the attempt's transaction, takes `writer_lock` (the lock every
    writer takes, declared by the capability that keeps it: see `Capability.writer_lock`),
    and looks the key up: a stored answer is replayed; otherwise the rest of the chain runs
    on the transaction joined (:class:`JoinedUnitOfWork`), the answer is rendered, stored,
    and everything commits at once. A key stored first by another transaction raises a
    `ConflictError`, so the bus runs the attempt again (which then replays).
    """

    def __init__(self, writer_lock: WriterLock | None = None) -> None:
        self.writer_lock = writer_lock

    def __call__(
        self,
        command: kernel_messages.Command,
        uow: IdempotencyUnitOfWork,
        call_next: Next,
        context: Mapping[str, Any],
    ) -> Any:
        keyed = context.get(CONTEXT)
        if keyed is None:
            return call_next(command, uow)
        assert isinstance(keyed, Keyed)
        request = keyed.request
        with uow:
            if self.writer_lock is not None:
                self.writer_lock(uow)
            repo = uow.idempotency
            now = uow.clock.now_ns()
            cutoff = now - keyed.retention_seconds * NANOSECONDS
            try:
                stored = repo.get(request.principal, request.key)
            except BrokenSealError as exc:
                raise IdempotencyError(
                    "idempotency_key_unverifiable",
                    "the answer stored for this Idempotency-Key fails its integrity check, so "
                    "it is not replayed, and the request was not run again (the first one may "
                    "have taken effect): check before sending it again under a new key",
                ) from exc
            if stored is not None and stored.created_at >= cutoff:
                return _replay(stored, request)
            joined = JoinedUnitOfWork(uow, writable=True)
            result = call_next(command, joined)
            status, body = keyed.respond(result, JoinedUnitOfWork(uow, writable=False))
            if not joined.committed:  # nothing written, nothing kept (nor any event raised)
                for _ in uow.collect_new_events():
                    pass
                return Answer(status, body, replayed=False)
            if stored is not None:  # expired: the key may name a new request now
                repo.delete(request.principal, request.key)
            repo.purge(cutoff, PURGE_BATCH)
            row = IdempotencyRow(
                request.principal, request.key, request.fingerprint, status, body, now
            )
            if not repo.insert(row):
                raise _KeyTakenError(request.key)
            uow.commit()
        return Answer(status, body, replayed=False)


def _replay(stored: IdempotencyRow, request: KeyedRequest) -> Answer:
    if stored.fingerprint != request.fingerprint:
        raise IdempotencyError(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request (another path or "
            "body); send a new key for a new request",
        )
    return Answer(stored.status, stored.body, replayed=True)


class JoinedUnitOfWork:
    """A handler's view of the transaction :class:`IdempotencyMiddleware` holds open:
    `with uow:` joins it instead of beginning one, and `commit()` only records that the
    handler wants its writes kept (the middleware commits them together with the stored
    answer). Leaving the block by an exception lets it reach the middleware's own block,
    which rolls everything back.

    Writable, it allows one block (a handler of one transaction); a second block, or a
    rollback in the middle, would break the all-or-nothing promise and raises instead. The
    read-only view (for rendering the answer) allows any number of blocks and no commit.

    Every other attribute (each capability's repository: `uow.ledger`, `uow.community`, …)
    is the wrapped unit of work's, so a new capability's repository needs no change here.
    """

    def __init__(self, uow: UnitOfWork, *, writable: bool) -> None:
        self._uow = uow
        self._writable = writable
        self._blocks = 0
        self._open = False
        self.committed = False
        self.log = uow.log
        self.clock = uow.clock

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # never the wrapped one's private state (nor a recursion)
            raise AttributeError(name)
        return getattr(self._uow, name)

    def __enter__(self) -> Self:
        if self._open:
            raise RuntimeError("a unit of work is entered once at a time")
        if self._writable and self._blocks:
            raise RuntimeError(
                "a handler run under an idempotency key must write in one transaction"
            )
        self._blocks += 1
        self._open = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open = False

    def commit(self) -> None:
        if not self._writable:
            raise RuntimeError("an answer is rendered from a read-only unit of work")
        if not self._open:
            raise RuntimeError("commit outside `with uow:`")
        self.committed = True

    def rollback(self) -> None:
        raise RuntimeError("a handler run under an idempotency key cannot roll back half way")

    def add_event(self, event: Event) -> None:
        self._uow.add_event(event)

    def collect_new_events(self) -> Iterator[Event]:
        return self._uow.collect_new_events()


# -- housekeeping ----------------------------------------------------------------------------


def purge_expired(
    cmd: kernel_idempotency_commands.PurgeIdempotencyKeys,
    uow: IdempotencyUnitOfWork,
    *,
    retention_seconds: int,
) -> int:
    """Forget keys stored more than `retention_seconds` ago (up to `cmd.limit` per
    transaction, until none is left); how many were forgotten."""
    purged = 0
    while True:
        with uow:
            repo = uow.idempotency
            cutoff = uow.clock.now_ns() - retention_seconds * NANOSECONDS
            batch = repo.purge(cutoff, cmd.limit)
            uow.commit()
        purged += batch
        if batch < cmd.limit:
            return purged
