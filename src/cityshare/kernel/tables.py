"""The one SQLAlchemy `MetaData` every capability's `tables.py` declares its tables on.

Migrations in `cityshare/migrations` create the schema; `cityshare.capabilities` imports every
capability, so `metadata.tables` then holds every table.

Ids are client-chosen signed 64-bit integers. On SQLite the primary keys are declared `INTEGER`
so that they become the table's rowid (the clustered key), which is what makes batch inserts fast.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, MetaData

metadata = MetaData()

#: A 64-bit primary key that is the rowid on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")
