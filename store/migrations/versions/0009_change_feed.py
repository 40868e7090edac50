"""per-key change versions, and NOTIFY on every publication (PostgreSQL)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03

`change_version` holds one version per change key ("net:<name>", "site:<id>"): a writer whose change
concerns one network or one site bumps that key instead of the global publication counter, so caches
keyed on other networks stay valid. On PostgreSQL, triggers send `NOTIFY gridshare_changes, '<key>
<version>'` whenever the publication counter (key "all") or a change key is bumped. NOTIFY inside a
transaction is delivered only when it commits, so a serving process's change feed (store/change_feed.py)
never hears of a change before its data is visible, and a writer that bypasses the helpers still
notifies. SQLite has no NOTIFY: its feed watches `PRAGMA data_version` instead.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

CHANNEL = "gridshare_changes"

_FUNCTIONS = f"""
CREATE OR REPLACE FUNCTION gridshare_notify_publication() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', 'all ' || NEW.value::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION gridshare_notify_change() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('{CHANNEL}', NEW.key || ' ' || NEW.version::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;
"""

_TRIGGERS = """
CREATE TRIGGER publication_counter_notify AFTER UPDATE ON publication_counter
    FOR EACH ROW WHEN (NEW.id = 1) EXECUTE FUNCTION gridshare_notify_publication();
CREATE TRIGGER change_version_notify AFTER INSERT OR UPDATE ON change_version
    FOR EACH ROW EXECUTE FUNCTION gridshare_notify_change();
"""


def upgrade() -> None:
    op.create_table(
        "change_version",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_FUNCTIONS)
        op.execute(_TRIGGERS)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS change_version_notify ON change_version")
        op.execute("DROP TRIGGER IF EXISTS publication_counter_notify ON publication_counter")
        op.execute("DROP FUNCTION IF EXISTS gridshare_notify_change()")
        op.execute("DROP FUNCTION IF EXISTS gridshare_notify_publication()")
    op.drop_table("change_version")
