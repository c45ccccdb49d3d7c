"""Hot statements compiled once per dialect and run on the driver's own cursor.

SQLAlchemy Core spends about 0.1 to 0.2 ms of CPU per ``Connection.execute`` on top of the
driver (execution context, parameter and result set-up, events), which on the intake's commit
path was more than the statements themselves. The statements of that path are therefore
compiled once per dialect by SQLAlchemy itself (the same SQL and the same bind processors it
would use: UTC instants, binaries; for an instant on SQLite an equivalent function that costs
less than half) and run on the DBAPI cursor of the caller's transaction; a
batch of rows is one ``executemany``. The transaction stays SQLAlchemy's (``engine.begin()``:
its commit or rollback covers these statements), and a driver error is raised as the same
``sqlalchemy.exc.DBAPIError`` subclass SQLAlchemy would raise (``IntegrityError`` for a
duplicate), so callers do not see a difference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine

from node_runtime.store import schema

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class Prepared:
    """One statement as compiled for one dialect, with its bind (and result) processors."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor, ...]
    positional: bool
    results: tuple[Processor, ...]
    constants: dict[str, Any]
    """Values the statement carries itself (a ``LIMIT``), by parameter name."""
    # (position, processor) of the parameters that have one
    _active: list[tuple[int, Callable[[Any], Any]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        active = [(i, p) for i, p in enumerate(self.processors) if p is not None]
        object.__setattr__(self, "_active", active)

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        if self.constants:
            values = {**self.constants, **values}
        if self.positional:
            out = [values[n] for n in self.names]
            for i, process in self._active:
                out[i] = process(out[i])
            return out
        named = {n: values[n] for n in self.names}
        for i, process in self._active:
            name = self.names[i]
            named[name] = process(named[name])
        return named

    def row(self, raw: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(v if p is None else p(v) for v, p in zip(raw, self.results, strict=True))


def _bind_processor(column_type: TypeEngine[Any], dialect: Dialect) -> Processor:
    """The column type's bind processor for ``dialect``; for an instant on SQLite an
    equivalent function of our own (``schema.sqlite_instant``)."""
    if isinstance(column_type, schema.UtcDateTime) and dialect.name == "sqlite":
        return schema.sqlite_instant
    return column_type.dialect_impl(dialect).bind_processor(dialect)


def prepare(statement: ClauseElement, dialect: Dialect, keys: Sequence[str]) -> Prepared:
    """Compile ``statement`` for ``dialect`` with exactly the parameters ``keys``.

    Refuses a statement that would need a parameter not in ``keys`` (a column default that
    SQLAlchemy would have filled in, say): the caller must pass every value itself.
    """
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))
    assert isinstance(compiled, SQLCompiler)
    if compiled.positional:
        names = tuple(compiled.positiontup or ())
    else:
        names = tuple(compiled.bind_names.values())
    binds = compiled.binds
    constants = {n: binds[n].value for n in names if n not in keys and binds[n].value is not None}
    missing = set(names) - set(keys) - set(constants)
    if missing:
        raise ValueError(f"statement needs parameters that are not given: {sorted(missing)}")
    processors = tuple(_bind_processor(binds[n].type, dialect) for n in names)
    columns = getattr(statement, "selected_columns", ())
    results = tuple(c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns)
    return Prepared(compiled.string, names, processors, compiled.positional, results, constants)


class Statements:
    """The prepared form of each hot statement, per dialect, made on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str, int, tuple[str, ...]], Prepared] = {}
        self._keep: list[ClauseElement] = []  # the statements whose id() keys the cache

    def get(self, statement: ClauseElement, dialect: Dialect, keys: Sequence[str]) -> Prepared:
        key = (dialect.name, dialect.driver, id(statement), tuple(keys))
        found = self._cache.get(key)
        if found is None:
            found = prepare(statement, dialect, keys)
            with self._lock:
                self._cache[key] = found
                self._keep.append(statement)
        return found


STATEMENTS = Statements()


class _Cursor:
    """A DBAPI cursor of the connection's transaction, closed on exit; a driver error is
    raised as SQLAlchemy's exception for it. A class rather than a generator-based context
    manager: the commit path opens several per message."""

    __slots__ = ("_conn", "_cursor", "_sql")

    def __init__(self, conn: Connection, sql: str) -> None:
        self._conn = conn
        self._sql = sql

    def __enter__(self) -> Any:
        self._cursor = self._conn.connection.cursor()
        return self._cursor

    def __exit__(self, kind: object, error: BaseException | None, _traceback: object) -> None:
        self._cursor.close()
        dbapi = self._conn.dialect.loaded_dbapi
        if error is not None and isinstance(error, dbapi.Error):
            raise DBAPIError.instance(self._sql, None, error, dbapi.Error) from error


def execute_many(
    conn: Connection, statement: ClauseElement, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Run ``statement`` once per row (one ``executemany``); every row has the same keys."""
    if not rows:
        return
    prepared = STATEMENTS.get(statement, conn.dialect, list(rows[0]))
    with _Cursor(conn, prepared.sql) as cursor:
        cursor.executemany(prepared.sql, [prepared.parameters(r) for r in rows])


def placeholder(dialect: Dialect) -> str:
    """The driver's positional parameter marker, for SQL written out by hand."""
    return "?" if dialect.paramstyle == "qmark" else "%s"


def fetch_sql(conn: Connection, sql: str, values: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of a query written out by hand (positional parameters, no processing)."""
    with _Cursor(conn, sql) as cursor:
        cursor.execute(sql, tuple(values))
        return [tuple(r) for r in cursor.fetchall()]


def execute(conn: Connection, statement: ClauseElement, values: Mapping[str, Any]) -> None:
    prepared = STATEMENTS.get(statement, conn.dialect, list(values))
    with _Cursor(conn, prepared.sql) as cursor:
        cursor.execute(prepared.sql, prepared.parameters(values))


def fetch(
    conn: Connection, statement: ClauseElement, values: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """The rows of a query, each value through the column type's result processor."""
    prepared = STATEMENTS.get(statement, conn.dialect, list(values))
    with _Cursor(conn, prepared.sql) as cursor:
        cursor.execute(prepared.sql, prepared.parameters(values))
        return [prepared.row(r) for r in cursor.fetchall()]
