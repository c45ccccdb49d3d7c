"""Instants bound on SQLite by the store's own statements are the text SQLAlchemy binds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from node_runtime.store import prepared, schema


class _NoOffset(tzinfo):
    """A tzinfo that knows no offset: astimezone takes such a value as local time."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


def _sqlalchemys() -> prepared.Processor:
    dialect = sa.create_engine("sqlite://").dialect
    return schema.UtcDateTime().dialect_impl(dialect).bind_processor(dialect)


def _instants() -> list[datetime | None]:
    rng = random.Random(2026)
    zones: list[tzinfo | None] = [
        None,
        UTC,
        timezone(timedelta(hours=1)),
        timezone(timedelta(hours=-9, minutes=-30)),
        timezone(timedelta(hours=14)),
        ZoneInfo("Europe/Amsterdam"),
        ZoneInfo("America/St_Johns"),
        _NoOffset(),
    ]
    out: list[datetime | None] = [None, datetime(1, 1, 2), datetime(9999, 12, 30, 23, 59, 59)]
    for year in (2, 999, 1000, 1970, 2026, 2038, 9998):
        for _ in range(300):
            out.append(
                datetime(
                    year,
                    rng.randint(1, 12),
                    rng.randint(1, 28),
                    rng.randint(0, 23),
                    rng.randint(0, 59),
                    rng.randint(0, 59),
                    rng.choice([0, 1, 999999, rng.randrange(10**6)]),
                    tzinfo=rng.choice(zones),
                    fold=rng.randint(0, 1),
                )
            )
    return out


def test_the_same_text_as_sqlalchemys_processor() -> None:
    sqlalchemys = _sqlalchemys()
    assert sqlalchemys is not None
    for value in _instants():
        assert schema.sqlite_instant(value) == sqlalchemys(value), value


def test_the_same_error_out_of_range() -> None:
    """An aware instant whose UTC time is before year 1: both refuse it alike."""
    sqlalchemys = _sqlalchemys()
    assert sqlalchemys is not None
    too_early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(OverflowError):
        sqlalchemys(too_early)
    with pytest.raises(OverflowError):
        schema.sqlite_instant(too_early)


def test_prepared_statements_use_it_on_sqlite_only() -> None:
    statement = sa.insert(schema.schema_migrations)
    keys = ["version", "applied_at"]
    on_sqlite = prepared.prepare(statement, sa.create_engine("sqlite://").dialect, keys)
    assert dict(zip(on_sqlite.names, on_sqlite.processors, strict=True))["applied_at"] is (
        schema.sqlite_instant
    )
    postgresql = sa.create_engine("postgresql+psycopg://u@localhost/db").dialect
    on_postgresql = prepared.prepare(statement, postgresql, keys)
    assert schema.sqlite_instant not in on_postgresql.processors
