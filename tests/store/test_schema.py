"""The schema comes from Alembic migrations and upgrading is safe to repeat on both databases."""

from __future__ import annotations

import sqlalchemy as sa

from gridshare.store.db import make_engine, upgrade
from gridshare.store.models import Base


def test_migrations_build_every_table_and_rerun_cleanly(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        upgrade(engine)  # second start of the server: nothing to do, nothing broken
        tables = set(sa.inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        assert "alembic_version" in tables
    finally:
        engine.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    """A model change without a migration is caught here, not on a customer's database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    engine = make_engine(database_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"include_object": _not_an_expression_index})
            diff = compare_metadata(context, Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def _not_an_expression_index(
    obj: object, _name: str | None, kind: str, _reflected: bool, _other: object
) -> bool:
    """Alembic cannot compare an index on an expression (PostgreSQL spells the reflected expression its
    own way; SQLite's is skipped): those are checked by what they do, in test_fleet_lookups.py."""
    if kind != "index":
        return True
    return all(isinstance(e, sa.Column) for e in getattr(obj, "expressions", ()))
