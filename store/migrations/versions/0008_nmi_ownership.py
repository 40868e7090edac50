"""one NMI binds one EndDevice; NMIs assigned to aggregators

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24

Before this revision two EndDevices could hold one NMI, and the engine gave the site's envelope to
whichever it read last. The unique index cannot be built over such rows, and nothing says which of the
claimants is the real connection point, so every contested NMI is released from all of its EndDevices
(each release is written to the audit log and logged as a warning): they fall back to their
DefaultDERControl until the operator binds the NMI again (`PUT /nmis/{nmi}/site`).
"""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

log = logging.getLogger("gridshare.store")

_site = sa.table("site", sa.column("id", sa.Integer), sa.column("nmi", sa.String))
_audit = sa.table(
    "audit_entry",
    sa.column("at_s", sa.BigInteger),
    sa.column("actor", sa.String),
    sa.column("role", sa.String),
    sa.column("method", sa.String),
    sa.column("path", sa.String),
    sa.column("action", sa.String),
    sa.column("target", sa.String),
    sa.column("details", sa.JSON),
)
_counter = sa.table("publication_counter", sa.column("id", sa.Integer), sa.column("value", sa.BigInteger))


def _release_contested_nmis() -> None:
    conn = op.get_bind()
    contested = conn.execute(
        sa.select(_site.c.nmi)
        .where(_site.c.nmi.is_not(None))
        .group_by(_site.c.nmi)
        .having(sa.func.count() > 1)
    ).scalars()
    now_s = int(time.time())
    released = 0
    for nmi in list(contested):
        holders = sorted(conn.execute(sa.select(_site.c.id).where(_site.c.nmi == nmi)).scalars())
        conn.execute(sa.update(_site).where(_site.c.nmi == nmi).values(nmi=None))
        for site_id in holders:
            conn.execute(
                sa.insert(_audit).values(
                    at_s=now_s,
                    actor="migration 0007",
                    role="system",
                    method="-",
                    path="-",
                    action="nmi.release",
                    target=f"site:{site_id}",
                    details={"nmi": nmi, "reason": "held by several EndDevices", "holders": holders},
                )
            )
        log.warning("NMI %s was held by EndDevices %s: released from all of them; rebind it", nmi, holders)
        released += 1
    if released:
        conn.execute(sa.update(_counter).where(_counter.c.id == 1).values(value=_counter.c.value + 1))


def upgrade() -> None:
    op.create_table(
        "nmi_assignment",
        sa.Column("nmi", sa.String(length=32), nullable=False),
        sa.Column("aggregator_id", sa.Integer(), nullable=False),
        sa.Column("assigned_s", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["aggregator_id"], ["aggregator.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("nmi"),
    )
    with op.batch_alter_table("nmi_assignment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nmi_assignment_aggregator_id"), ["aggregator_id"], unique=False)

    _release_contested_nmis()
    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.create_index("uq_site_nmi", ["nmi"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("site", schema=None) as batch_op:
        batch_op.drop_index("uq_site_nmi")
    with op.batch_alter_table("nmi_assignment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nmi_assignment_aggregator_id"))
    op.drop_table("nmi_assignment")
