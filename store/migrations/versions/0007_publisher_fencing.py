"""publisher fencing epoch (the lock itself is the database's or the OS's); readings by receipt time

The publisher lease row no longer expires: who may publish is decided by a PostgreSQL advisory lock
or an OS file lock, and the row keeps the fencing epoch every publication checks. Readings get an
index on the server's receipt time, by which the engine now judges freshness.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("publisher_lease", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("acquired_s", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.drop_column("expires_s")
    with op.batch_alter_table("telemetry_reading", schema=None) as batch_op:
        batch_op.create_index("ix_reading_received", ["received_s"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("telemetry_reading", schema=None) as batch_op:
        batch_op.drop_index("ix_reading_received")
    with op.batch_alter_table("publisher_lease", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expires_s", sa.BigInteger(), nullable=False, server_default="0"))
        batch_op.drop_column("acquired_s")
        batch_op.drop_column("epoch")
