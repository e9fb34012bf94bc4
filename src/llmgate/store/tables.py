"""The tables of the store. Schema changes go through Alembic (``migrations/``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

# Every admin resource, etcd-style: its JSON value and the revisions that created and last
# modified it.  Credentials use ``"{username}/{credential id}"`` as their id.
resources = Table(
    "resources",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("id", String(200), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_index", BigInteger, nullable=False),
    Column("modified_index", BigInteger, nullable=False),
)

# One row (id = 1): the global revision, bumped in the same transaction as every write.
revision = Table(
    "revision",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("value", BigInteger, nullable=False),
)

# Small facts the gateway keeps for itself (the generated admin key).
system_settings = Table(
    "system_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)
