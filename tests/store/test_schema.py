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
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
