"""Store ids as long as the admin API accepts.

A consumer's username is up to 256 characters (APISIX's consumer schema) and is its store id; a
credential's store id is ``"{username}/{credential id}"``, up to 256 + 1 + 64.  The columns
holding store ids were 200 wide: PostgreSQL refused a 201-256 character username that SQLite
stored.  ``resources.id``, ``changes.id`` and ``credential_keys.owner`` become 321 wide.
PostgreSQL widens a varchar in place; SQLite does not enforce the width, its tables are rebuilt
(batch mode) so that their declared type says the same.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (("resources", "id"), ("changes", "id"), ("credential_keys", "owner"))


def _width(width: int, was: int) -> None:
    for table, column in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column,
                type_=sa.String(width),
                existing_type=sa.String(was),
                existing_nullable=False,
            )


def upgrade() -> None:
    _width(321, was=200)


def downgrade() -> None:
    # ``changes`` may name deleted resources with long ids: emptied, a data-plane process reads
    # everything once.  Fails on PostgreSQL while a stored resource's id is longer than 200.
    op.execute(sa.text("DELETE FROM changes"))
    _width(200, was=321)
