"""Deadlines in Dutch working days (national holidays from the `holidays` package) or hours."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from node_runtime.conversations import calendar

AMS = ZoneInfo("Europe/Amsterdam")


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 4, 2), True),  # Thursday
        (date(2026, 4, 3), False),  # Goede Vrijdag
        (date(2026, 4, 4), False),  # Saturday
        (date(2026, 4, 6), False),  # Tweede Paasdag
        (date(2026, 4, 7), True),
        (date(2026, 4, 27), False),  # Koningsdag (a Monday)
        (date(2026, 5, 14), False),  # Hemelvaartsdag
        (date(2026, 12, 25), False),  # Eerste Kerstdag
        (date(2026, 12, 28), True),
    ],
)
def test_working_days(day: date, working: bool) -> None:
    assert calendar.is_working_day(day) is working


def test_holiday_names_come_from_the_library() -> None:
    assert calendar.holiday_name(date(2026, 4, 27)) is not None
    assert calendar.holiday_name(date(2026, 4, 28)) is None


def test_one_working_day_over_a_weekend() -> None:
    # Friday 27 November 2026, 16:00: due by the end of Monday 30 November (CET)
    due = calendar.due(ams(2026, 11, 27, 16, 0), working_days=1)
    assert due == datetime(2026, 11, 30, 23, 0, tzinfo=UTC)


def test_working_days_over_easter_weekend_with_two_holidays() -> None:
    # Thursday 2 April 2026: Good Friday, the weekend and Easter Monday do not count
    assert calendar.due(ams(2026, 4, 2, 15, 0), working_days=1) == datetime(
        2026, 4, 7, 22, 0, tzinfo=UTC
    )  # end of Tuesday 7 April (CEST)
    assert calendar.due(ams(2026, 4, 2, 15, 0), working_days=5) == datetime(
        2026, 4, 13, 22, 0, tzinfo=UTC
    )  # end of Monday 13 April


def test_opening_on_a_holiday_counts_from_the_next_working_day() -> None:
    assert calendar.due(ams(2026, 4, 6, 9, 0), working_days=1) == datetime(
        2026, 4, 7, 22, 0, tzinfo=UTC
    )


def test_hours_run_through_weekends() -> None:
    opened = ams(2026, 11, 27, 16, 0)
    assert calendar.due(opened, hours=48) == datetime(2026, 11, 29, 15, 0, tzinfo=UTC)


def test_one_kind_of_term() -> None:
    with pytest.raises(ValueError):
        calendar.due(ams(2026, 1, 5, 9, 0))
    with pytest.raises(ValueError):
        calendar.due(ams(2026, 1, 5, 9, 0), working_days=1, hours=1)
