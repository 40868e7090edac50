"""many networks side by side: a publication pointer and derates per network, networks retired by name

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03

A network is known by its name; `network_model` keeps its versions (the newest active row of a name is
that network's current version) and `retired_s` marks a network taken out of service. The single
envelope pointer (row 1) becomes one pointer per network, so each network publishes on its own, and a
derate names the network whose asset it derates. Existing rows are given the name of the network that
was active, so an upgraded store carries on unchanged.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("network_model") as batch:
        batch.add_column(sa.Column("retired_s", sa.BigInteger, nullable=True))
    op.create_index("ix_network_model_name_active", "network_model", ["name", "active"])
    with op.batch_alter_table("envelope_pointer") as batch:
        batch.add_column(sa.Column("network", sa.String(64), nullable=True))
    with op.batch_alter_table("asset_derate") as batch:
        batch.add_column(sa.Column("network", sa.String(64), nullable=True))
    op.create_index("ix_asset_derate_network", "asset_derate", ["network"])
    bind = op.get_bind()
    active = bind.execute(
        sa.text("SELECT name FROM network_model WHERE active ORDER BY id DESC LIMIT 1")
    ).scalar_one_or_none()
    if active is None:
        bind.execute(sa.text("DELETE FROM envelope_pointer"))
    else:
        bind.execute(sa.text("UPDATE envelope_pointer SET network = :name"), {"name": active})
        bind.execute(sa.text("UPDATE asset_derate SET network = :name"), {"name": active})
    op.create_index("uq_envelope_pointer_network", "envelope_pointer", ["network"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_envelope_pointer_network", "envelope_pointer")
    op.drop_index("ix_asset_derate_network", "asset_derate")
    with op.batch_alter_table("asset_derate") as batch:
        batch.drop_column("network")
    with op.batch_alter_table("envelope_pointer") as batch:
        batch.drop_column("network")
    op.drop_index("ix_network_model_name_active", "network_model")
    with op.batch_alter_table("network_model") as batch:
        batch.drop_column("retired_s")
