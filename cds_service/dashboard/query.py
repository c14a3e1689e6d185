"""Every figure of the dashboard, aggregated in SQL: a handful of GROUP BY queries whose
results are a few hundred rows whatever the store holds.

Cards are counted in the week they were issued, and so is what clinicians did with them
(feedback arrives within minutes of the card): a week's accepted and overridden cards are
among that week's issued cards, and ``--since``/``--until`` select cards by issue date.
Counts are of distinct cards, as in ``diazepam-cds report``: a card reported twice counts
once per outcome; what the feedback did is kept on the card itself (``accepted``,
``overridden``, ``override_code``, set when the feedback is stored), so nothing here joins the
feedback. Feedback that names no card this service issued to that client is counted apart (by
the date it was received).

Speed (bench/dashboard.py): issued, accepted, overridden and answered cards come from
``card_counts``, which the store keeps per day and dimension as it writes cards and feedback,
so the dashboard reads a few thousand rows whatever the number of cards; the other figures
read small tables (override reasons through ``ix_issued_cards_overrides``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from cds_service.store.tables import (
    accepted_suggestions,
    card_counts,
    feedback,
    hook_call_counts,
    issued_cards,
    suppressed_cards,
)

# dimensions of an issued card, in the order of ix_issued_cards_dashboard
DIMENSIONS = ("topic", "service", "indicator", "profile", "issuer")


class week_start(FunctionElement[str]):  # noqa: N801 - reads as the SQL function it renders
    """The Monday (ISO week) of a date as ``YYYY-MM-DD`` text, in each database's own date
    functions: days fold into weeks in the database, over the few rows of ``card_counts``."""

    type = sa.String()
    inherit_cache = True
    name = "week_start"


@compiles(week_start, "sqlite")
def _week_sqlite(element: week_start, compiler: Any, **kw: Any) -> str:
    # 'weekday 0' moves to the next Sunday (or stays on one); six days back is its Monday
    return f"date({compiler.process(element.clauses, **kw)}, 'weekday 0', '-6 days')"


@compiles(week_start)
def _week_default(element: week_start, compiler: Any, **kw: Any) -> str:
    return f"to_char(date_trunc('week', {compiler.process(element.clauses, **kw)}), 'YYYY-MM-DD')"


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


@dataclass(frozen=True)
class Window:
    """Cards issued from ``since`` (a date, inclusive) to ``until`` (a date, inclusive)."""

    since: date | None = None
    until: date | None = None

    @property
    def lower(self) -> datetime | None:
        return datetime.combine(self.since, time()) if self.since else None

    @property
    def upper(self) -> datetime | None:
        """Exclusive upper bound: the start of the day after ``until`` (none past the last day
        a date can name)."""
        if self.until is None or self.until >= date.max:
            return None
        return datetime.combine(self.until + timedelta(days=1), time())

    def where(self, column: Any) -> list[Any]:
        clauses = []
        if self.lower is not None:
            clauses.append(column >= self.lower)
        if self.upper is not None:
            clauses.append(column < self.upper)
        return clauses

    def where_day(self, column: Any) -> list[Any]:
        clauses = []
        if self.since is not None:
            clauses.append(column >= self.since)
        if self.until is not None:
            clauses.append(column <= self.until)
        return clauses

    def describe(self) -> str:
        if self.since and self.until:
            return f"cards issued {self.since.isoformat()} to {self.until.isoformat()}"
        if self.since:
            return f"cards issued since {self.since.isoformat()}"
        if self.until:
            return f"cards issued until {self.until.isoformat()}"
        return "all cards issued"


@dataclass(frozen=True)
class Group:
    """Cards sharing a week and every dimension, with what clinicians did with them."""

    week: str
    topic: str | None
    service: str
    indicator: str | None
    profile: str | None
    issuer: str | None
    issued: int = 0
    accepted: int = 0
    overridden: int = 0
    answered: int = 0


@dataclass
class DashboardData:
    """The aggregates every figure is drawn from (no row is per card or per patient)."""

    window: Window
    groups: list[Group] = field(default_factory=list)
    # (topic, override code) -> distinct overridden cards
    reasons: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    # (topic, kind, drug, code) -> distinct accepted cards
    taken: list[tuple[str | None, str | None, str | None, str | None, int]] = field(
        default_factory=list
    )
    # (topic, override code) -> suppressed cards
    suppressed: list[tuple[str | None, str | None, int]] = field(default_factory=list)
    # (week, service) -> calls, calls with diazepam orders, diazepam orders, cards, suppressed
    calls: list[tuple[str, str, int, int, int, int, int]] = field(default_factory=list)
    unknown_feedback: int = 0

    def weeks(self) -> list[str]:
        """Every week from the first to the last with data, none skipped: a trend line must
        show a quiet week as zero, not close the gap. (Only weeks with data bound it: a window
        of ten thousand years draws the weeks that have cards, not half a million.)"""
        found = {g.week for g in self.groups if g.week} | {c[0] for c in self.calls}
        if not found:
            return []
        first, last = date.fromisoformat(min(found)), date.fromisoformat(max(found))
        count = (last - first).days // 7 + 1
        return [(first + timedelta(weeks=i)).isoformat() for i in range(count)]


def _cards_query(window: Window) -> Any:
    """Issued, accepted, overridden and answered cards per week and dimension."""
    c = card_counts.c
    week = week_start(c.day).label("week")
    dims = (c.topic_code, c.service_id, c.indicator, c.profile, c.client_iss)
    return (
        sa.select(
            week,
            *dims,
            sa.func.sum(c.issued),
            sa.func.sum(c.accepted),
            sa.func.sum(c.overridden),
            sa.func.sum(c.answered),
        )
        .where(*window.where_day(c.day))
        .group_by(week, *dims)
    )


def _reasons_query(window: Window) -> Any:
    c = issued_cards.c
    return (
        sa.select(c.topic_code, c.override_code, sa.func.count())
        .where(c.overridden.is_(True), *window.where(c.issued_at))
        .group_by(c.topic_code, c.override_code)
    )


def _taken_query(window: Window) -> Any:
    a = accepted_suggestions.c
    return (
        sa.select(a.topic_code, a.kind, a.drug, a.code, sa.func.count(sa.distinct(a.card_uuid)))
        .where(*window.where(a.issued_at))
        .group_by(a.topic_code, a.kind, a.drug, a.code)
    )


def _suppressed_query(window: Window) -> Any:
    return (
        sa.select(suppressed_cards.c.topic_code, suppressed_cards.c.override_code, sa.func.count())
        .where(*window.where(suppressed_cards.c.suppressed_at))
        .group_by(suppressed_cards.c.topic_code, suppressed_cards.c.override_code)
    )


def _calls_query(window: Window) -> Any:
    c = hook_call_counts.c
    return (
        sa.select(
            c.day,
            c.service_id,
            sa.func.sum(c.calls),
            sa.func.sum(c.calls_with_orders),
            sa.func.sum(c.diazepam_orders),
            sa.func.sum(c.cards),
            sa.func.sum(c.suppressed),
        )
        .where(*window.where_day(c.day))
        .group_by(c.day, c.service_id)
    )


def _unknown_query(window: Window) -> Any:
    return sa.select(sa.func.count()).where(
        feedback.c.card_known.is_(False), *window.where(feedback.c.received_at)
    )


def _day(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _groups(rows: Iterable[Any]) -> list[Group]:
    """One group per week and dimension; '' (none) back to None."""
    totals: dict[tuple[Any, ...], list[int]] = {}
    for week, *dims, issued, accepted, overridden, answered in rows:
        key = (str(week), *(d or None for d in dims))
        total = totals.setdefault(key, [0, 0, 0, 0])
        total[0] += int(issued)
        total[1] += int(accepted)
        total[2] += int(overridden)
        total[3] += int(answered)
    return [Group(*key, *total) for key, total in sorted(totals.items(), key=_sort_key)]


def _sort_key(item: tuple[tuple[Any, ...], Any]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in item[0])


def collect(engine: sa.Engine, window: Window | None = None) -> DashboardData:
    """Run every aggregate of the dashboard in one read transaction (one snapshot)."""
    window = window or Window()
    data = DashboardData(window)
    with engine.connect() as connection, connection.begin():
        data.groups = _groups(connection.execute(_cards_query(window)))
        data.reasons = [(t, c, int(n)) for t, c, n in connection.execute(_reasons_query(window))]
        data.taken = [
            (t, k, d, c, int(n)) for t, k, d, c, n in connection.execute(_taken_query(window))
        ]
        data.suppressed = [
            (t, c, int(n)) for t, c, n in connection.execute(_suppressed_query(window))
        ]
        weekly: dict[tuple[str, str], list[int]] = {}
        for day, service, *counts in connection.execute(_calls_query(window)):
            key = (monday(_day(day)).isoformat(), service)
            totals = weekly.setdefault(key, [0] * len(counts))
            for i, value in enumerate(counts):
                totals[i] += int(value or 0)
        data.calls = [
            (week, service, *totals)  # type: ignore[misc]
            for (week, service), totals in sorted(weekly.items())
        ]
        data.unknown_feedback = int(connection.execute(_unknown_query(window)).scalar_one())
    return data
