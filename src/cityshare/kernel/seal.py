"""Row seals: a keyed MAC over every field of a stored row that the public audit log does not
cover, so that a change made outside the platform is noticed when the row is used and by
`cityshare audit verify`.

Some stored rows are no fact the public log may show, yet changing one changes an answer: the
salted hash of a charger's password (a new hash admits whoever knows the new password), and
the stored reply to a keyed write (a retry would be told something that never happened). Each
such row carries a *seal*: HMAC-SHA256, under a secret only the platform holds (the seal key:
`CITYSHARE_SEAL_SECRET`, or `seal.secret` in the key folder, made on first use), of the table's
name and all of the row's other fields, its primary key included. A seal moved to another row
or table, or a field changed, no longer verifies; forging one needs the key, which is neither
in the database nor in the log.

A seal shows that a row is one the platform wrote; it cannot show that a row is missing, nor
that an older row sealed by the platform was put back in place of a newer one. Rows that are
facts are leaves of the log instead, which shows both.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

#: Hex characters in a seal (HMAC-SHA256).
SEAL_LENGTH = 64

_DOMAIN = b"cityshare/row-seal/v1\x00"


class Sealer:
    """Seals rows with one key, and checks seals made with it."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("a seal key is at least 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Sealer(<key>)"  # never the key, in a log line or a traceback

    def seal(self, table: str, fields: Mapping[str, str | int | None]) -> str:
        """The seal of a row of `table` with these fields (name -> value, all but the seal)."""
        for name, value in fields.items():
            if value is not None and not isinstance(value, str | int):
                raise TypeError(f"{table}.{name}: only text, integers and NULL are sealed")
        canonical = json.dumps(
            [table, dict(fields)], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hmac.new(self._key, _DOMAIN + canonical.encode(), hashlib.sha256).hexdigest()

    def verify(
        self, table: str, fields: Mapping[str, str | int | None], seal: str | None
    ) -> bool:
        """Whether `seal` is this key's seal of that row (a missing seal is not)."""
        if seal is None:
            return False
        return hmac.compare_digest(self.seal(table, fields), seal)
