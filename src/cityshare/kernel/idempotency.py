"""Idempotency keys for writes (IETF draft-ietf-httpapi-idempotency-key-header).

A client that sends a write again with the same `Idempotency-Key` (because the first answer
was lost) gets the first answer again instead of a second effect. A key is scoped to the
principal that sent it (`Principal.name`, role and subject): one principal's key never
meets another's, and a stored answer is only ever replayed to the principal it was made for.

**Exactly once.** :func:`run` opens one write transaction, takes the ledger's write lock
(which serialises every writer), and looks the key up. Only if it is new does it run the
command's handler, *inside that same transaction*: the handler's `with uow:` joins it and its
`commit()` is deferred (see :class:`JoinedUnitOfWork`). The answer is rendered from what the
handler returned, still inside it; then the key, the request's fingerprint and the answer are
stored and everything commits at once. So an effect and its stored answer are written
together or not at all (a crash cannot leave one without the other), and a concurrent retry
waits for the lock, then finds the answer. The primary key (principal, key) is the backstop:
an insert that finds the key taken rolls its attempt back, and the next attempt replays.

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from cityshare.kernel import idempotency_commands as kernel_idempotency_commands
from cityshare.kernel import messages as kernel_messages
from cityshare.kernel.bus import MAX_ATTEMPTS, MessageBus
from cityshare.kernel.errors import ConflictError
from cityshare.kernel.idempotency_repo import IdempotencyRow
from cityshare.kernel.messages import Event
from cityshare.kernel.seals import BrokenSealError
from cityshare.kernel.uow import AbstractUnitOfWork

log = logging.getLogger(__name__)

MAX_KEY_LENGTH = 255
#: 1-255 printable ASCII characters (space to tilde).
KEY_RE = re.compile(r"^[\x20-\x7e]{1,255}$")
MAX_PRINCIPAL_LENGTH = 200
#: Expired keys each keyed write purges (so the table stays bounded without a sweep).
PURGE_BATCH = 100
NANOSECONDS = 1_000_000_000

#: What renders a handler's result as the answer (status, JSON text), in the transaction.
Respond = Callable[[Any, AbstractUnitOfWork], tuple[int, str]]


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
    """
    handler = bus.command_handlers[type(command)]
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            answer, events = _attempt(bus, handler, request, command, respond, retention_seconds)
        except (ConflictError, _KeyTakenError):
            if attempt == MAX_ATTEMPTS:
                raise
            log.info("%s under an idempotency key lost a race; retrying", type(command).__name__)
            continue
        _publish(bus, events)
        return answer
    raise AssertionError("unreachable")


class _KeyTakenError(Exception):
    """Another transaction stored the key first: this attempt rolls back, the next replays."""


def _attempt(
    bus: MessageBus,
    handler: Callable[[Any, Any], Any],
    request: KeyedRequest,
    command: kernel_messages.Command,
    respond: Respond,
    retention_seconds: int,
) -> tuple[Answer, list[Event]]:
    uow = bus.uow_factory()
    with uow:
        uow.ledger.lock_ledger()
        repo = uow.idempotency
        now = uow.clock.now_ns()
        cutoff = now - retention_seconds * NANOSECONDS
        try:
            stored = repo.get(request.principal, request.key)
        except BrokenSealError as exc:
            raise IdempotencyError(
                "idempotency_key_unverifiable",
                "the answer stored for this Idempotency-Key fails its integrity check, so it is "
                "not replayed, and the request was not run again (the first one may have taken "
                "effect): check before sending it again under a new key",
            ) from exc
        if stored is not None and stored.created_at >= cutoff:
            return _replay(stored, request), []
        joined = JoinedUnitOfWork(uow, writable=True)
        result = handler(command, joined)
        status, body = respond(result, JoinedUnitOfWork(uow, writable=False))
        if not joined.committed:
            return Answer(status, body, replayed=False), []  # nothing written, nothing kept
        if stored is not None:  # expired: the key may name a new request now
            repo.delete(request.principal, request.key)
        repo.purge(cutoff, PURGE_BATCH)
        row = IdempotencyRow(request.principal, request.key, request.fingerprint, status, body, now)
        if not repo.insert(row):
            raise _KeyTakenError(request.key)
        uow.commit()
    return Answer(status, body, replayed=False), list(uow.collect_new_events())


def _replay(stored: IdempotencyRow, request: KeyedRequest) -> Answer:
    if stored.fingerprint != request.fingerprint:
        raise IdempotencyError(
            "idempotency_key_reused",
            "this Idempotency-Key was already used for a different request (another path or "
            "body); send a new key for a new request",
        )
    return Answer(stored.status, stored.body, replayed=True)


def _publish(bus: MessageBus, events: list[Event]) -> None:
    """As the bus does after a command: an event handler must not undo a committed write."""
    for event in events:
        for handler in bus.event_handlers.get(type(event), []):
            try:
                handler(event)
            except Exception:
                log.exception("event handler %r failed on %r", handler, event)


class JoinedUnitOfWork:
    """A handler's view of the transaction :func:`run` holds open: `with uow:` joins it instead
    of beginning one, and `commit()` only records that the handler wants its writes kept
    (`run` commits them together with the stored answer). Leaving the block by an exception
    lets it reach `run`'s own block, which rolls everything back.

    Writable, it allows one block (a handler of one transaction); a second block, or a
    rollback in the middle, would break the all-or-nothing promise and raises instead. The
    read-only view (for rendering the answer) allows any number of blocks and no commit.
    """

    def __init__(self, uow: AbstractUnitOfWork, *, writable: bool) -> None:
        self._uow = uow
        self._writable = writable
        self._blocks = 0
        self._open = False
        self.committed = False
        self.ledger = uow.ledger
        self.log = uow.log
        self.identity = uow.identity
        self.energy = uow.energy
        self.billing = uow.billing
        self.community = uow.community
        self.charging = uow.charging
        self.idempotency = uow.idempotency
        self.clock = uow.clock

    def __enter__(self) -> JoinedUnitOfWork:
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
    uow: AbstractUnitOfWork,
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
