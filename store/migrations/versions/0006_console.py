"""operator console: device contact, limits in force, constraint reports, browser sessions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "device_contact",
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("first_s", sa.BigInteger(), nullable=False),
        sa.Column("last_s", sa.BigInteger(), nullable=False),
        sa.Column("last_resource", sa.String(length=64), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("derc_polls", sa.BigInteger(), nullable=False),
        sa.Column("last_derc_s", sa.BigInteger(), nullable=True),
        sa.Column("poll_interval_s", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("site_id"),
    )
    op.create_table(
        "limit_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.BigInteger(), nullable=False),
        sa.Column("end_s", sa.BigInteger(), nullable=False),
        sa.Column("export_limit_w", sa.Float(), nullable=False),
        sa.Column("import_limit_w", sa.Float(), nullable=False),
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("published_s", sa.BigInteger(), nullable=False),
        sa.Column("fallback", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["site_id"], ["site.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("limit_history", schema=None) as batch_op:
        batch_op.create_index("ix_limit_history_site_start", ["site_id", "start_s"], unique=False)
        batch_op.create_index("ix_limit_history_start", ["start_s"], unique=False)
    op.create_table(
        "constraint_report",
        sa.Column("set_id", sa.Integer(), nullable=False),
        sa.Column("report", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["set_id"], ["envelope_set.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("set_id"),
    )
    op.create_table(
        "console_session",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("session_sha256", sa.String(length=64), nullable=False),
        sa.Column("token_id", sa.Integer(), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("created_s", sa.BigInteger(), nullable=False),
        sa.Column("expires_s", sa.BigInteger(), nullable=False),
        sa.Column("ended_s", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["api_token.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("session_sha256"),
    )


def downgrade() -> None:
    op.drop_table("console_session")
    op.drop_table("constraint_report")
    with op.batch_alter_table("limit_history", schema=None) as batch_op:
        batch_op.drop_index("ix_limit_history_start")
        batch_op.drop_index("ix_limit_history_site_start")
    op.drop_table("limit_history")
    op.drop_table("device_contact")
