"""bump a site's change key whenever its DERs, MirrorUsagePoints or MirrorMeterReadings change

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03

A device's own reports (DER documents, MirrorUsagePoints) do not bump the publication counter, so that
telemetry leaves every cached DERControlList valid. The bodies that *show* those rows (DERList, DER,
its four documents, MirrorUsagePointList, MirrorUsagePoint, and DeviceCapability's MirrorUsagePoint
count) are cached against the key `site:<id>` instead. Triggers bump it in the writer's transaction,
so every writer (a route, a batched writer, the operator, a cascade) invalidates them, whichever code
path it takes. Telemetry readings themselves (`telemetry_reading`) appear in none of those bodies and
are left alone: the fleet-rate write stays one insert.
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_BUMP_SQLITE = (
    "INSERT INTO change_version (key, version) {select} "
    "ON CONFLICT (key) DO UPDATE SET version = change_version.version + 1;"
)
_DIRECT = "SELECT 'site:' || {row}.site_id, 1 WHERE true"
_VIA_MUP = "SELECT 'site:' || site_id, 1 FROM mirror_usage_point WHERE id = {row}.mup_id"

#: (table, how to find the site from NEW/OLD)
_TABLES = (("der", _DIRECT), ("mirror_usage_point", _DIRECT), ("mirror_meter_reading", _VIA_MUP))


def _sqlite_triggers() -> list[str]:
    statements = []
    for table, select in _TABLES:
        for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",))):
            body = " ".join(_BUMP_SQLITE.format(select=select.format(row=row)) for row in rows)
            statements.append(
                f"CREATE TRIGGER {table}_site_change_{event.lower()} AFTER {event} ON {table} "
                f"FOR EACH ROW BEGIN {body} END"
            )
    return statements


_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION gridshare_bump_site(site bigint) RETURNS void AS $$
BEGIN
    IF site IS NOT NULL THEN
        INSERT INTO change_version (key, version) VALUES ('site:' || site::text, 1)
        ON CONFLICT (key) DO UPDATE SET version = change_version.version + 1;
    END IF;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION gridshare_site_row_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN PERFORM gridshare_bump_site(OLD.site_id); END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.site_id IS DISTINCT FROM OLD.site_id) THEN
        PERFORM gridshare_bump_site(NEW.site_id);
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION gridshare_meter_reading_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM gridshare_bump_site((SELECT site_id FROM mirror_usage_point WHERE id = OLD.mup_id));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM gridshare_bump_site((SELECT site_id FROM mirror_usage_point WHERE id = NEW.mup_id));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;
"""

_PG_TRIGGERS = """
CREATE TRIGGER der_site_change AFTER INSERT OR UPDATE OR DELETE ON der
    FOR EACH ROW EXECUTE FUNCTION gridshare_site_row_changed();
CREATE TRIGGER mirror_usage_point_site_change AFTER INSERT OR UPDATE OR DELETE ON mirror_usage_point
    FOR EACH ROW EXECUTE FUNCTION gridshare_site_row_changed();
CREATE TRIGGER mirror_meter_reading_site_change AFTER INSERT OR UPDATE OR DELETE ON mirror_meter_reading
    FOR EACH ROW EXECUTE FUNCTION gridshare_meter_reading_changed();
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_PG_FUNCTION)
        op.execute(_PG_TRIGGERS)
    else:
        for statement in _sqlite_triggers():
            op.execute(statement)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for table, _select in _TABLES:
        if postgres:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_site_change ON {table}")
        else:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_site_change_{event}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS gridshare_meter_reading_changed()")
        op.execute("DROP FUNCTION IF EXISTS gridshare_site_row_changed()")
        op.execute("DROP FUNCTION IF EXISTS gridshare_bump_site(bigint)")
