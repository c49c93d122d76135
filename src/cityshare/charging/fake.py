"""An in-memory charging repository, so that the rules for chargers' passwords and vehicles' id
tokens can be tested without a database (`tests/unit/test_charging_handlers.py`); the
real-database tests (`tests/integration/test_charging_service.py`) stay the proof that
`ChargingRepository` behaves the same.

It holds the password and token side of `model.ChargingStore`, with the same answers (ids count
up from the highest stored; the live state is the latest fact; a token removed twice is refused
as the removals table's key refuses it); passwords are not sealed here (the seal is the store's,
kernel/seals.py). A handler that reaches for anything else (sessions, planned readings) fails
loudly with AttributeError.
"""

from __future__ import annotations

from dataclasses import replace

from cityshare.charging.model import ChargerSecretRow, IdTokenRow


class FakeChargingRepository:
    def __init__(self) -> None:
        self.secrets: dict[int, ChargerSecretRow] = {}
        #: Tokens as inserted; removals are kept apart (token id -> removed_at), as in the tables.
        self.tokens: dict[int, IdTokenRow] = {}
        self.removals: dict[int, int] = {}

    # -- charger passwords -----------------------------------------------------------------

    def next_secret_id(self) -> int:
        return max(self.secrets, default=0) + 1

    def insert_secret(self, row: ChargerSecretRow) -> None:
        if row.id in self.secrets:
            raise ValueError(f"charger secret {row.id} exists")  # the primary key
        self.secrets[row.id] = row

    def current_secret(self, device_id: str) -> ChargerSecretRow | None:
        mine = [s for s in self.secrets.values() if s.device_id == device_id]
        return max(mine, key=lambda s: s.id, default=None)

    # -- id tokens -------------------------------------------------------------------------

    def next_token_id(self) -> int:
        return max(self.tokens, default=0) + 1

    def _stored(self, token: IdTokenRow) -> IdTokenRow:
        return replace(token, removed_at=self.removals.get(token.id))

    def live_token(self, token_hash: str) -> IdTokenRow | None:
        found = [
            self._stored(t)
            for _, t in sorted(self.tokens.items())
            if t.token_hash == token_hash and t.id not in self.removals
        ]
        return found[-1] if found else None

    def tokens_of(self, device_id: str) -> list[IdTokenRow]:
        return [self._stored(t) for _, t in sorted(self.tokens.items()) if t.device_id == device_id]

    def token(self, token_id: int) -> IdTokenRow | None:
        found = self.tokens.get(token_id)
        return None if found is None else self._stored(found)

    def insert_token(self, row: IdTokenRow) -> None:
        if row.id in self.tokens:
            raise ValueError(f"id token {row.id} exists")
        self.tokens[row.id] = replace(row, removed_at=None)

    def remove_token(self, token_id: int, at: int) -> None:
        if token_id in self.removals:
            raise ValueError(f"id token {token_id} is removed already")
        self.removals[token_id] = at
