"""Dutch working days: Monday to Friday except the national public holidays.

The holidays come from the maintained `holidays` package (its NL calendar: Nieuwjaarsdag,
Goede Vrijdag, Pasen, Koningsdag, Bevrijdingsdag in lustrum years, Hemelvaart, Pinksteren,
Kerstmis), never from a list kept here. Days are days in Europe/Amsterdam.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import holidays

AMSTERDAM = ZoneInfo("Europe/Amsterdam")


@functools.lru_cache(maxsize=64)
def _holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.country_holidays("NL", years=year).keys())


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _holidays(day.year)


def holiday_name(day: date) -> str | None:
    name = holidays.country_holidays("NL", years=day.year).get(day)
    return None if name is None else str(name)


def due_after_working_days(opened: datetime, days: int) -> datetime:
    """The end of the `days`-th working day after the day `opened` falls on (Amsterdam time):
    a request on Friday with 1 working day is due by the end of Monday, or of Tuesday when
    Monday is a public holiday. Returned as a UTC instant (midnight after that day)."""
    if days < 1:
        raise ValueError("a term in working days is at least 1")
    day = opened.astimezone(AMSTERDAM).date()
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day):
            counted += 1
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=AMSTERDAM)
    return end.astimezone(UTC)


def due(
    opened: datetime, *, working_days: int | None = None, hours: float | None = None
) -> datetime:
    if (working_days is None) == (hours is None):
        raise ValueError("a deadline is in working days or in hours")
    if working_days is not None:
        return due_after_working_days(opened, working_days)
    assert hours is not None
    return opened.astimezone(UTC) + timedelta(hours=hours)
