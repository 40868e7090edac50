"""Index what registering a device looks up across the whole fleet, so a registration reads a few rows

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Two checks a device's registration makes are about every other device, and both read every row:

- whether an NMI (under any of its spellings: ten characters or eleven with the checksum digit, any
  case) is bound to another EndDevice (a ConnectionPoint write): `ix_site_nmi_canonical`, on the
  same expression the query names (store/models.py SITE_NMI_CANONICAL). Not unique: `uq_site_nmi`
  stays what makes a binding one EndDevice's, and a store holding two spellings of one NMI from before
  the claim check existed still upgrades;
- whether another MirrorUsagePoint has a MirrorMeterReading with a new mirror's mRID:
  `ix_mmr_mrid` (the unique index on (mup_id, mrid) cannot serve a lookup by mRID alone).

So onboarding a fleet cost its size squared (bench/bench_fleet_lookups.py).
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_CANONICAL_NMI = "(CASE WHEN length(nmi) = 11 THEN upper(substr(nmi, 1, 10)) ELSE upper(nmi) END)"


def upgrade() -> None:
    op.execute(f"CREATE INDEX IF NOT EXISTS ix_site_nmi_canonical ON site ({_CANONICAL_NMI})")
    op.create_index("ix_mmr_mrid", "mirror_meter_reading", ["mrid"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_mmr_mrid", "mirror_meter_reading", if_exists=True)
    op.execute("DROP INDEX IF EXISTS ix_site_nmi_canonical")
