"""Many rows into one table in one statement, as cheaply as each database allows.

The report writer (store/group_commit.py) inserts a batch's device reports together: a few dozen
readings and Responses every few milliseconds. Through SQLAlchemy's executemany, psycopg sent each row
as a statement of its own in a pipeline and SQLAlchemy expanded the Responses into a multi-row VALUES
whose text differs with every batch size, and the Python work per row (about 50 µs a report, measured
with the conversation benchmark) cost more than the database's. On PostgreSQL a batch's rows now go as
one array per column into `INSERT ... SELECT * FROM unnest(...)`: one statement, one round trip, the
arrays dumped by psycopg's C code. Where the caller needs each row's key, the same statement draws the
keys from the table's sequence and inserts them explicitly, so each row's key is known without relying
on the order RETURNING gives rows back. On SQLite the rows go to the driver's executemany (a loop in C)
and a keyed row's id is the driver's last row id. Both run as driver SQL through SQLAlchemy's
connection (its events, error translation and pool invalidation apply) without compiling a Core
statement per batch.
"""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import Connection, Dialect, Table


def insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert `rows` (dicts of column name -> value) into `table`, in this connection's transaction."""
    for columns, group in _by_columns(rows):
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(_unnest_sql(table, columns, conn.dialect), _arrays(columns, group))
        else:
            sql = _values_sql(table, columns, conn.dialect.paramstyle)
            conn.exec_driver_sql(sql, [tuple(row[c] for c in columns) for row in group])


def insert_rows_returning_keys(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> list[int]:
    """`insert_rows`, and the primary key each row was given, in the rows' order."""
    keys: list[int] = []
    for columns, group in _by_columns(rows):
        if conn.dialect.name == "postgresql":
            sql = _keyed_unnest_sql(table, columns, conn.dialect)
            keys.extend(int(k) for (k,) in conn.exec_driver_sql(sql, (len(group), *_arrays(columns, group))))
            continue
        sql = _values_sql(table, columns, conn.dialect.paramstyle)
        for row in group:  # SQLite's driver runs each in C; its last row id is the key
            result = conn.exec_driver_sql(sql, tuple(row[c] for c in columns))
            if result.lastrowid is None:
                raise RuntimeError(f"no key given to the row inserted into {table.name}")
            keys.append(int(result.lastrowid))
    if len(keys) != len(rows):
        raise RuntimeError(f"{len(rows)} rows inserted into {table.name}, {len(keys)} keys given")
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
def _keyed_unnest_sql(table: Table, columns: tuple[str, ...], dialect: Dialect) -> str:
    """`_unnest_sql` that also draws each row's key from the table's sequence and returns the keys in
    the rows' order: one statement. A key is paired with its row by ordinal, not by RETURNING, whose
    order PostgreSQL does not promise; the drawn keys are materialized once and read twice."""
    (pk,) = table.primary_key.columns
    names = ", ".join(f'"{c}"' for c in columns)
    arrays = ", ".join(f"%s::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
    aliases = [f"c{i}" for i in range(len(columns))]
    sequence = f"pg_get_serial_sequence('{table.name}', '{pk.name}')"
    return (
        f"WITH keys AS MATERIALIZED (SELECT nextval({sequence}) AS k, n FROM generate_series(1, %s) AS n),"
        f" given AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS u({', '.join(aliases)}, n)),"
        f' inserted AS (INSERT INTO "{table.name}" ("{pk.name}", {names})'
        f" SELECT keys.k, {', '.join(f'given.{a}' for a in aliases)} FROM given JOIN keys USING (n))"
        " SELECT k FROM keys ORDER BY n"
    )


@functools.lru_cache(maxsize=64)
def _values_sql(table: Table, columns: tuple[str, ...], paramstyle: str) -> str:
    """A plain INSERT in the driver's own placeholders, run as driver SQL: SQLAlchemy's Core insert
    compiled and bound its parameters per call, which cost more than SQLite's own work."""
    names = ", ".join(f'"{c}"' for c in columns)
    mark = "?" if paramstyle == "qmark" else "%s"
    return f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join(mark for _ in columns)})'
