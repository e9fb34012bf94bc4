"""Incremental reload and the credential index.

``changes`` records, for every revision, which resources it wrote or deleted (plus one marker
row ``("", "")`` per revision), so a data-plane process fetches only those rows.
``credential_keys`` holds each unique credential attribute (a key-auth key's digest, a
basic-auth username) with the consumer or credential that has it: duplicate checks are one
indexed lookup, not a scan of every consumer.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import orjson
import sqlalchemy as sa
from alembic import op

from llmgate.credentials import unique_credentials

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("revision", sa.BigInteger, primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(200), primary_key=True),
    )
    keys = op.create_table(
        "credential_keys",
        sa.Column("plugin", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(256), primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("owner", sa.String(200), primary_key=True),
    )
    op.create_index("credential_keys_owner", "credential_keys", ["kind", "owner"])
    rows = op.get_bind().execute(
        sa.text(
            "SELECT kind, id, value FROM resources WHERE kind IN ('consumers', 'credentials') "
            "ORDER BY created_index, id"
        )
    )
    found = {
        (plugin, compared, kind, id)
        for kind, id, value in rows
        for plugin, _attr, compared in unique_credentials(orjson.loads(value).get("plugins"))
    }
    if found:
        op.bulk_insert(
            keys,
            [{"plugin": p, "value": v, "kind": k, "owner": o} for p, v, k, o in sorted(found)],
        )


def downgrade() -> None:
    op.drop_index("credential_keys_owner", "credential_keys")
    op.drop_table("credential_keys")
    op.drop_table("changes")
