"""SQLite: count every change-key write in one row, so a reader can tell a report from a key change

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03

SQLite's change feed (store/change_feed.py) learns that *something* was committed from
`PRAGMA data_version`, and until now forgot every change-key version it knew whenever that moved.
Device reports commit many times a second and bump no change key (only the activity counter), so
every serving thread re-read each key it was asked for after every report batch. Triggers on
`change_version` now count each insert, update or delete of a key in `publication_counter` row 3, in
the writer's transaction: a reader that finds that count unchanged knows no key moved. PostgreSQL
needs none of this (its feed is told each key by NOTIFY); its row 3 just stays 0.
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

#: publication_counter row counting change-key writes (store/db.py KEY_CHANGES).
_ROW = 3
_EVENTS = ("insert", "update", "delete")


def upgrade() -> None:
    op.execute(f"INSERT INTO publication_counter (id, value) VALUES ({_ROW}, 0) ON CONFLICT (id) DO NOTHING")
    if op.get_bind().dialect.name != "sqlite":
        return
    for event in _EVENTS:
        op.execute(
            f"CREATE TRIGGER change_version_counted_{event} AFTER {event.upper()} ON change_version "
            f"FOR EACH ROW BEGIN UPDATE publication_counter SET value = value + 1 WHERE id = {_ROW}; END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in _EVENTS:
            op.execute(f"DROP TRIGGER IF EXISTS change_version_counted_{event}")
    op.execute(f"DELETE FROM publication_counter WHERE id = {_ROW}")
