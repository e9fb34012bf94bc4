"""The tables of the store. Schema changes go through Alembic (``migrations/``)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, MetaData, String, Table, Text

metadata = MetaData()

# The longest store id: a credential's ``"{username}/{credential id}"``, 256 + 1 + 64 (APISIX's
# consumer username and id rules, ``schemas/``); other resources' ids are 64 at most, consumers'
# their username.  ``resources.id``, ``changes.id`` and ``credential_keys.owner`` hold them.
ID_LENGTH = 321

# Every admin resource, etcd-style: its JSON value and the revisions that created and last
# modified it.  Credentials use ``"{username}/{credential id}"`` as their id.
resources = Table(
    "resources",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("id", String(ID_LENGTH), primary_key=True),
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

# Which resources each revision wrote or deleted, and a marker row ("", "") per revision: a
# data-plane process fetches only the rows changed since the revision it serves.  Rows older
# than ``CHANGES_KEPT`` revisions are pruned (a process further behind reloads everything).
changes = Table(
    "changes",
    metadata,
    Column("revision", BigInteger, primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("id", String(ID_LENGTH), primary_key=True),
)

# Each unique credential attribute (``credentials.unique_credentials``: a key-auth key's
# digest, a basic-auth username) with the consumer or credential that has it (``kind``
# "consumers" or "credentials", ``owner`` its store id): duplicate checks look it up by
# (plugin, value), the primary key's prefix.  Kept by ``Writer`` in the write's transaction.
credential_keys = Table(
    "credential_keys",
    metadata,
    Column("plugin", String(32), primary_key=True),
    Column("value", String(256), primary_key=True),
    Column("kind", String(32), primary_key=True),
    Column("owner", String(ID_LENGTH), primary_key=True),
    Index("credential_keys_owner", "kind", "owner"),
)

# Small facts the gateway keeps for itself (the generated admin key).
system_settings = Table(
    "system_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Token accounting (``GET /apisix/admin/usage``): LLM calls per minute, consumer, route, model
# and cache ("" for calls a provider answered, "hit" for answers proxy-cache replayed), added to
# by every data-plane process (``observability/usage.py``).  Not configuration: writing it never
# bumps the revision.  ``consumer`` is "" for anonymous calls.  ``cost`` is in 10^-12 of the
# price table's currency (``ai/pricing.py``).
usage = Table(
    "usage",
    metadata,
    Column("minute", BigInteger, primary_key=True),  # Unix seconds at the minute's start
    Column("consumer", String(256), primary_key=True),  # usernames: up to 256 characters
    Column("route", String(200), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("cache", String(8), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("total_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=False),
)

# One row per LLM call (``GET /apisix/admin/usage/calls``), kept ``usage_calls_days`` days:
# who, what, the tokens and the cost, under the request id the client saw in X-Request-Id.
llm_calls = Table(
    "llm_calls",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("time", BigInteger, nullable=False),  # Unix milliseconds
    Column("request_id", String(128), nullable=False),
    Column("consumer", String(256), nullable=False),
    Column("route", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("instance", String(100), nullable=False),
    Column("request_type", String(16), nullable=False),
    Column("cache", String(8), nullable=False),
    Column("status", Integer, nullable=False),
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cached_tokens", BigInteger, nullable=False),
    Column("cost", BigInteger, nullable=True),  # null: no price for the model
    Index("llm_calls_request_id", "request_id"),
    Index("llm_calls_time", "time"),
)

# The ids of the usage batches shipped into ``usage`` and ``llm_calls`` (``observability/
# usage_spool.py``): a batch shipped again (after a crash, from a node's spool) is skipped.
usage_batches = Table(
    "usage_batches",
    metadata,
    Column("id", String(160), primary_key=True),
    Column("shipped", BigInteger, nullable=False),  # Unix seconds
    Index("usage_batches_shipped", "shipped"),
)
