"""An index on each site's NMI in its one spelling, so an NMI claim reads one row, not every site

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

Before this revision, checking whether an NMI (under any of its spellings: ten characters or eleven
with the checksum digit, any case) is bound to another EndDevice read every row of `site`: each
device's ConnectionPoint write cost time in proportion to the fleet, so onboarding a fleet cost its
size squared. The index is on the same expression the query names (store/models.py
SITE_NMI_CANONICAL). It is not unique: `uq_site_nmi` stays what makes a binding one EndDevice's, and a
store holding two spellings of one NMI from before the claim check existed still upgrades.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_EXPRESSION = "(CASE WHEN length(nmi) = 11 THEN upper(substr(nmi, 1, 10)) ELSE upper(nmi) END)"


def upgrade() -> None:
    op.execute(f"CREATE INDEX IF NOT EXISTS ix_site_nmi_canonical ON site ({_EXPRESSION})")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_site_nmi_canonical")
