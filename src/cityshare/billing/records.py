"""Billing's audit-log records: how each fact it writes becomes a leaf, and is checked again.

Every price list, provider choice, bill, billing run and top-up is a leaf of the audit log,
written in the transaction that stores its row and encoded by the codecs below; `cityshare
audit verify` re-encodes the stored rows with the same codecs (`RECORDS`), so a changed row
cannot hide. Each codec logs every column of its table, in the table's order (the one column
list the row types, the SQL and the log fields follow): a new column is a new leaf layout, so
the tables' columns and the logged keys must not change. The leaf bytes are a contract
(auditors and the twin read them).
"""

from __future__ import annotations

from json.encoder import encode_basestring_ascii as json_string

from sqlalchemy import Table

from cityshare.billing.model import BillRow
from cityshare.billing.tables import (
    billing_runs,
    energy_bills,
    price_lists,
    provider_choices,
    top_ups,
)
from cityshare.kernel.capability import LoggedRecord
from cityshare.tlog.entries import RecordCodec


def _columns(table: Table) -> tuple[str, ...]:
    return tuple(table.c.keys())


PRICE_LIST = RecordCodec("price_list", _columns(price_lists))
PROVIDER_CHOICE = RecordCodec("provider_choice", _columns(provider_choices))
#: One bill per billed interval; its fields are `BillRow`'s, in order.
ENERGY_BILL = RecordCodec("energy_bill", _columns(energy_bills))
BILLING_RUN = RecordCodec("billing_run", _columns(billing_runs))
TOP_UP = RecordCodec("top_up", _columns(top_ups))

BILL_FIELDS = ENERGY_BILL.fields


def _bill_template() -> tuple[str, list[int]]:
    """`ENERGY_BILL`'s encoding as one %-template (billing encodes a record per interval, and
    json.dumps costs several µs each): keys sorted, "type" among them, every field an integer
    but `tod`. `audit verify` re-encodes stored bills with the codec itself (`RECORDS`), so a
    difference would show."""
    names = sorted((*BILL_FIELDS, "type"))
    parts = []
    for name in names:
        value = "%s" if name == "tod" else "%d"
        if name == "type":
            value = json_string(ENERGY_BILL.type)
        parts.append(f"{json_string(name)}:{value}")
    return "{" + ",".join(parts) + "}", [BILL_FIELDS.index(n) for n in names if n != "type"]


_BILL_TEMPLATE, _BILL_ORDER = _bill_template()
_TOD = BILL_FIELDS.index("tod")


def bill_entry(row: BillRow) -> bytes:
    """The leaf of a bill (a `BillRow` tuple): `ENERGY_BILL`'s bytes, the fast way."""
    values = [json_string(str(row[i])) if i == _TOD else row[i] for i in _BILL_ORDER]
    return (_BILL_TEMPLATE % tuple(values)).encode("ascii")


#: The record types `audit verify` checks both ways: each codec and the table it logs.
RECORDS = [
    LoggedRecord(codec.type, table.name, codec.of_mapping)
    for codec, table in (
        (PRICE_LIST, price_lists),
        (PROVIDER_CHOICE, provider_choices),
        (ENERGY_BILL, energy_bills),
        (BILLING_RUN, billing_runs),
        (TOP_UP, top_ups),
    )
]
