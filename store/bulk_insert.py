"""Many rows into one table in one statement, as cheaply as each database allows.

The report writer (store/group_commit.py) inserts a batch's device reports together: a few dozen
readings and Responses every few milliseconds. Through SQLAlchemy's executemany, psycopg sent each row
as a statement of its own in a pipeline and SQLAlchemy expanded the Responses into a multi-row VALUES
whose text differs with every batch size, and the Python work per row (about 50 µs a report, measured
with the conversation benchmark) cost more than the database's. On PostgreSQL a batch's rows now go as
one array per column into `INSERT ... SELECT * FROM unnest(...)`: one statement, one round trip, the
arrays dumped by psycopg's C code. Where the caller needs each row's key, the keys are drawn from the
table's sequence first and inserted explicitly, so each row's key is known without relying on the
order RETURNING gives rows back. Other databases keep SQLAlchemy's executemany, which costs SQLite
little (its driver loops in C).
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Dialect, Insert, Table, insert


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (dicts of column name -> value) into `table`, in this connection's transaction."""
    for columns, group in _by_columns(rows):
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(_unnest_sql(table, columns, conn.dialect), _arrays(columns, group))
        else:
            conn.execute(_plain(table), group)


def insert_rows_returning_keys(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """`insert_rows`, and the primary key each row was given, in the rows' order."""
    (pk,) = table.primary_key.columns
    if conn.dialect.name != "postgresql":
        return [int(k) for k in conn.execute(_returning(table), rows).scalars().all()]
    draw = f"SELECT nextval(pg_get_serial_sequence('{table.name}', '{pk.name}')) FROM generate_series(1, %s)"
    keys = [int(k) for (k,) in conn.exec_driver_sql(draw, (len(rows),))]
    if len(keys) != len(rows):
        raise RuntimeError(f"{len(rows)} keys asked of the sequence of {table.name}, {len(keys)} given")
    keyed = [{pk.name: key, **row} for key, row in zip(keys, rows, strict=True)]
    for columns, group in _by_columns(keyed):
        conn.exec_driver_sql(_unnest_sql(table, columns, conn.dialect), _arrays(columns, group))
    return keys


def _by_columns(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """The rows grouped by the columns they set (one statement needs one column list), in order."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.items())


def _arrays(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> tuple[list[Any], ...]:
    return tuple([row[c] for row in rows] for c in columns)


@functools.lru_cache(maxsize=64)
def _unnest_sql(table: Table, columns: tuple[str, ...], dialect: Dialect) -> str:
    """One array parameter per column, cast to the column's type (psycopg sends Python lists as arrays)."""
    names = ", ".join(f'"{c}"' for c in columns)
    arrays = ", ".join(f"%s::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
    return f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({arrays})'


@functools.lru_cache(maxsize=64)
def _plain(table: Table) -> Insert:
    return insert(table)


@functools.lru_cache(maxsize=64)
def _returning(table: Table) -> Any:  # a ReturningInsert, which SQLAlchemy does not export
    (pk,) = table.primary_key.columns
    return insert(table).returning(pk, sort_by_parameter_order=True)
