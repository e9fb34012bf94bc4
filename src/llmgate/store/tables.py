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

# Token accounting (``GET /apisix/admin/usage``): LLM calls per minute, consumer, route and
# model, added to by every data-plane process (``observability/usage.py``).  Not configuration:
# writing it never bumps the revision.  ``consumer`` is "" for anonymous calls.
usage = Table(
    "usage",
    metadata,
    Column("minute", BigInteger, primary_key=True),  # Unix seconds at the minute's start
    Column("consumer", String(256), primary_key=True),  # usernames: up to 256 characters
    Column("route", String(200), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
)
