"""Cost and cache hits in the usage table; per-call usage records with their request ids.

``usage`` gains ``cache`` (part of the key: "" for calls a provider answered, "hit" for answers
proxy-cache replayed), ``cached_tokens`` and ``cost`` (in 10^-12 of the price table's currency).
A primary key cannot be altered in SQLite, so the table is rebuilt and its rows copied.

``llm_calls`` holds one row per LLM call (``GET /apisix/admin/usage/calls``), with the request
id the client got in ``X-Request-Id``.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COUNTS = ("requests", "prompt_tokens", "completion_tokens", "total_tokens")


def _usage_table(name: str, with_cost: bool) -> None:
    columns = [
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("consumer", sa.String(256), primary_key=True),
        sa.Column("route", sa.String(200), primary_key=True),
        sa.Column("model", sa.String(200), primary_key=True),
    ]
    if with_cost:
        columns.append(sa.Column("cache", sa.String(8), primary_key=True))
    columns += [sa.Column(count, sa.BigInteger, nullable=False) for count in _COUNTS]
    if with_cost:
        columns += [
            sa.Column("cached_tokens", sa.BigInteger, nullable=False),
            sa.Column("cost", sa.BigInteger, nullable=False),
        ]
    op.create_table(name, *columns)


def upgrade() -> None:
    _usage_table("usage_new", with_cost=True)
    counts = ", ".join(_COUNTS)
    op.execute(
        f"INSERT INTO usage_new (minute, consumer, route, model, cache, {counts}, "
        f"cached_tokens, cost) SELECT minute, consumer, route, model, '', {counts}, 0, 0 "
        "FROM usage"
    )
    op.drop_table("usage")
    op.rename_table("usage_new", "usage")
    op.create_table(
        "llm_calls",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("time", sa.BigInteger, nullable=False),  # Unix milliseconds
        sa.Column("request_id", sa.String(128), nullable=False),
        sa.Column("consumer", sa.String(256), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(100), nullable=False),
        sa.Column("request_type", sa.String(16), nullable=False),
        sa.Column("cache", sa.String(8), nullable=False),
        sa.Column("status", sa.Integer, nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger, nullable=False),
        sa.Column("completion_tokens", sa.BigInteger, nullable=False),
        sa.Column("cached_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost", sa.BigInteger, nullable=True),  # null: no price for the model
    )
    op.create_index("llm_calls_request_id", "llm_calls", ["request_id"])
    op.create_index("llm_calls_time", "llm_calls", ["time"])


def downgrade() -> None:
    op.drop_table("llm_calls")
    _usage_table("usage_old", with_cost=False)
    counts = ", ".join(_COUNTS)
    op.execute(
        f"INSERT INTO usage_old (minute, consumer, route, model, {counts}) "
        f"SELECT minute, consumer, route, model, {', '.join(f'SUM({c})' for c in _COUNTS)} "
        "FROM usage GROUP BY minute, consumer, route, model"
    )
    op.drop_table("usage")
    op.rename_table("usage_old", "usage")
