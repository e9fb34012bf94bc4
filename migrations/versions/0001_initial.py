"""The store: resources, the global revision, system settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(200), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_index", sa.BigInteger, nullable=False),
        sa.Column("modified_index", sa.BigInteger, nullable=False),
    )
    revision_table = op.create_table(
        "revision",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(revision_table, [{"id": 1, "value": 0}])
    op.create_table(
        "system_settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("system_settings")
    op.drop_table("revision")
    op.drop_table("resources")
