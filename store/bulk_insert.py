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
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, Table, Update


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
            sql = _batch_sql(((table, columns, True),), (), conn.dialect)
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


#: One job of an insert batch: its rows into a table, and whether it needs their keys back.
BatchJob = tuple[Table, list[dict[str, Any]], bool]
#: A batch's rows by (table, columns set, keyed), each with the index of its job, in first-seen order.
_Groups = dict[tuple[Table, tuple[str, ...], bool], list[tuple[int, dict[str, Any]]]]


def insert_jobs(conn: Connection, jobs: Sequence[BatchJob]) -> list[list[int]]:
    """Every job's rows in this connection's transaction, each table's rows together (one statement per
    table and column set, whichever job they came from); each job's keys (empty unless keyed), in order."""
    keys: list[list[int]] = [[] for _ in jobs]
    for (table, _, keyed), members in _grouped(jobs).items():
        rows = [row for _, row in members]
        if not keyed:
            insert_rows(conn, table, rows)
            continue
        for (index, _), key in zip(members, insert_rows_returning_keys(conn, table, rows), strict=True):
            keys[index].append(key)
    return keys


def _grouped(jobs: Sequence[BatchJob]) -> _Groups:
    groups: _Groups = {}
    for index, (table, rows, keyed) in enumerate(jobs):
        for row in rows:
            groups.setdefault((table, tuple(row), keyed), []).append((index, row))
    return groups


def _by_columns(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """The rows grouped by the columns they set (one statement needs one column list), in order."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row), []).append(row)
    return list(groups.items())


def _arrays(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> tuple[list[Any], ...]:
    return tuple([row[c] for row in rows] for c in columns)


def _names_and_arrays(table: Table, columns: tuple[str, ...], dialect: Dialect) -> tuple[str, str]:
    """The quoted column list, and one array parameter per column cast to the column's type (psycopg
    sends Python lists as arrays)."""
    names = ", ".join(f'"{c}"' for c in columns)
    arrays = ", ".join(f"%s::{table.c[c].type.compile(dialect=dialect)}[]" for c in columns)
    return names, arrays


@functools.lru_cache(maxsize=64)
def _unnest_sql(table: Table, columns: tuple[str, ...], dialect: Dialect) -> str:
    names, arrays = _names_and_arrays(table, columns, dialect)
    return f'INSERT INTO "{table.name}" ({names}) SELECT * FROM unnest({arrays})'


@functools.lru_cache(maxsize=64)
def _values_sql(table: Table, columns: tuple[str, ...], paramstyle: str) -> str:
    """A plain INSERT in the driver's own placeholders, run as driver SQL: SQLAlchemy's Core insert
    compiled and bound its parameters per call, which cost more than SQLite's own work."""
    names = ", ".join(f'"{c}"' for c in columns)
    mark = "?" if paramstyle == "qmark" else "%s"
    return f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join(mark for _ in columns)})'


class InsertBatch:
    """Store a batch of insert-only jobs and run `also` (the batch's bookkeeping, e.g. the activity
    counter's UPDATE), all in one committed transaction; return each job's keys (empty unless keyed).

    On PostgreSQL the whole batch is one statement (data-modifying CTEs, atomic by itself) on a connection
    in autocommit: one round trip where a session's transaction took five, and about half the writer's
    CPU (bench/bench_report_writer.py). Elsewhere the same inserts run in one transaction.
    """

    def __init__(self, engine: Engine, also: Sequence[Update] = ()) -> None:
        self._engine = engine
        self._also = tuple(also)
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    def __call__(self, jobs: list[BatchJob]) -> list[list[int]]:
        if self._engine.dialect.name == "postgresql":
            groups = _grouped(jobs)
            keys: list[list[int]] = [[] for _ in jobs]
            shape = tuple(groups)
            with self._autocommit.connect() as conn:
                sql = _batch_sql(shape, self._also, conn.dialect)
                params: list[Any] = []
                for (_, columns, keyed), members in groups.items():
                    rows = [row for _, row in members]
                    params.extend((len(rows), *_arrays(columns, rows)) if keyed else _arrays(columns, rows))
                given = conn.exec_driver_sql(sql, tuple(params)).all()
            keyed_members = [m for (_, _, keyed), members in groups.items() if keyed for m in members]
            if len(given) != len(keyed_members):
                raise RuntimeError(f"{len(keyed_members)} keyed rows inserted, {len(given)} keys given")
            for (index, _), (key,) in zip(keyed_members, given, strict=True):
                keys[index].append(int(key))
            return keys
        with self._engine.begin() as conn:
            keys = insert_jobs(conn, jobs)
            for statement in self._also:
                conn.execute(statement)
        return keys


@functools.lru_cache(maxsize=64)
def _batch_sql(
    shape: tuple[tuple[Table, tuple[str, ...], bool], ...], also: tuple[Update, ...], dialect: Dialect
) -> str:
    """One PostgreSQL statement for a batch of this shape, all as CTEs (which PostgreSQL runs to completion,
    in one snapshot, as one statement): each plain group an `INSERT ... unnest`; each keyed group a draw
    of its keys from the table's sequence, materialized once, and an insert pairing each key with its row
    by ordinal (not by RETURNING, whose order PostgreSQL does not promise); each of `also` an UPDATE. It
    returns the keyed groups' keys in group and row order. Parameters: per group in order, the row count
    (keyed groups) and one array per column."""
    parts: list[str] = []
    keyed_selects: list[str] = []
    for g, (table, columns, keyed) in enumerate(shape):
        if not keyed:
            parts.append(f"p{g} AS ({_unnest_sql(table, columns, dialect)})")
            continue
        names, arrays = _names_and_arrays(table, columns, dialect)
        (pk,) = table.primary_key.columns
        aliases = [f"c{i}" for i in range(len(columns))]
        sequence = f"pg_get_serial_sequence('{table.name}', '{pk.name}')"
        parts.append(
            f"k{g} AS MATERIALIZED (SELECT nextval({sequence}) AS k, n FROM generate_series(1, %s) AS n)"
        )
        parts.append(
            f"g{g} AS (SELECT * FROM unnest({arrays}) WITH ORDINALITY AS u({', '.join(aliases)}, n))"
        )
        parts.append(
            f'i{g} AS (INSERT INTO "{table.name}" ("{pk.name}", {names})'
            f" SELECT k{g}.k, {', '.join(f'g{g}.{a}' for a in aliases)} FROM g{g} JOIN k{g} USING (n))"
        )
        keyed_selects.append(f"SELECT {g} AS g, n, k FROM k{g}")
    for u, statement in enumerate(also):
        update_sql = str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
        parts.append(f"u{u} AS ({update_sql})")
    final = (
        f"SELECT k FROM ({' UNION ALL '.join(keyed_selects)}) AS keys ORDER BY g, n"
        if keyed_selects
        else "SELECT 1 WHERE false"
    )
    return "WITH " + ", ".join(parts) + " " + final
