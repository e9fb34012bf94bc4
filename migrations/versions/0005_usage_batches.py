"""The ids of the usage batches the store received (``observability/usage_spool.py``).

Each data-plane process spools its usage deltas in batches with unique ids before shipping
them; a batch shipped twice (a crash between the commit and the spool's cleanup, a restart
that ships what was spooled) is counted once because its id is already here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_batches",
        sa.Column("id", sa.String(160), primary_key=True),
        sa.Column("shipped", sa.BigInteger, nullable=False),  # Unix seconds
    )
    op.create_index("usage_batches_shipped", "usage_batches", ["shipped"])


def downgrade() -> None:
    op.drop_table("usage_batches")
