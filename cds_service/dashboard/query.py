"""Every figure of the dashboard, aggregated in SQL: a handful of GROUP BY queries whose
results are a few hundred rows whatever the store holds.

Cards are counted in the week they were issued, and so is what clinicians did with them
(feedback arrives within minutes of the card): a week's accepted and overridden cards are
among that week's issued cards, and ``--since``/``--until`` select cards by issue date.
Counts are of distinct cards, as in ``diazepam-cds report``: a card reported twice counts
once per outcome. Feedback that names no card this service issued to that client is counted
apart (by the date it was received). The issued-cards scan is served by
``ix_issued_cards_dashboard`` (migration 0005), which holds every column it groups by.
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
    feedback,
    hook_call_counts,
    issued_cards,
    issued_suggestions,
    suppressed_cards,
)

# dimensions of an issued card, in the order of ix_issued_cards_dashboard
DIMENSIONS = ("topic", "service", "indicator", "profile", "issuer")


class week_start(FunctionElement[str]):  # noqa: N801 - reads as the SQL function it renders
    """The Monday (ISO week) of a timestamp as ``YYYY-MM-DD`` text, in each database's own
    date functions."""

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
        found = {g.week for g in self.groups} | {c[0] for c in self.calls}
        if not found:
            return []
        first, last = date.fromisoformat(min(found)), date.fromisoformat(max(found))
        count = (last - first).days // 7 + 1
        return [(first + timedelta(weeks=i)).isoformat() for i in range(count)]


def _issued_query(window: Window) -> Any:
    week = week_start(issued_cards.c.issued_at).label("week")
    dims = [
        issued_cards.c.topic_code,
        issued_cards.c.service_id,
        issued_cards.c.indicator,
        issued_cards.c.profile,
        issued_cards.c.client_iss,
    ]
    return (
        sa.select(week, *dims, sa.func.count())
        .where(*window.where(issued_cards.c.issued_at))
        .group_by(week, *dims)
    )


def _answered_query(window: Window) -> Any:
    week = week_start(issued_cards.c.issued_at).label("week")
    dims = [
        issued_cards.c.topic_code,
        issued_cards.c.service_id,
        issued_cards.c.indicator,
        issued_cards.c.profile,
        issued_cards.c.client_iss,
    ]

    def distinct_cards(outcome: str) -> Any:
        card = sa.case((feedback.c.outcome == outcome, feedback.c.card_uuid))
        return sa.func.count(sa.distinct(card))

    return (
        sa.select(
            week,
            *dims,
            distinct_cards("accepted"),
            distinct_cards("overridden"),
            sa.func.count(sa.distinct(feedback.c.card_uuid)),
        )
        .select_from(feedback.join(issued_cards, issued_cards.c.card_uuid == feedback.c.card_uuid))
        .where(feedback.c.card_known.is_(True), *window.where(issued_cards.c.issued_at))
        .group_by(week, *dims)
    )


def _reasons_query(window: Window) -> Any:
    return (
        sa.select(
            issued_cards.c.topic_code,
            feedback.c.override_code,
            sa.func.count(sa.distinct(feedback.c.card_uuid)),
        )
        .select_from(feedback.join(issued_cards, issued_cards.c.card_uuid == feedback.c.card_uuid))
        .where(
            feedback.c.card_known.is_(True),
            feedback.c.outcome == "overridden",
            *window.where(issued_cards.c.issued_at),
        )
        .group_by(issued_cards.c.topic_code, feedback.c.override_code)
    )


def _taken_query(window: Window) -> Any:
    joined = (
        accepted_suggestions.join(feedback, feedback.c.id == accepted_suggestions.c.feedback_id)
        .join(issued_cards, issued_cards.c.card_uuid == feedback.c.card_uuid)
        .outerjoin(
            issued_suggestions,
            sa.and_(
                issued_suggestions.c.suggestion_uuid == accepted_suggestions.c.suggestion_uuid,
                issued_suggestions.c.card_uuid == feedback.c.card_uuid,
            ),
        )
    )
    return (
        sa.select(
            issued_cards.c.topic_code,
            issued_suggestions.c.kind,
            issued_suggestions.c.drug,
            issued_suggestions.c.code,
            sa.func.count(sa.distinct(feedback.c.card_uuid)),
        )
        .select_from(joined)
        .where(
            feedback.c.card_known.is_(True),
            feedback.c.outcome == "accepted",
            *window.where(issued_cards.c.issued_at),
        )
        .group_by(
            issued_cards.c.topic_code,
            issued_suggestions.c.kind,
            issued_suggestions.c.drug,
            issued_suggestions.c.code,
        )
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


def _merge(issued: Iterable[Any], answered: Iterable[Any]) -> list[Group]:
    groups: dict[tuple[Any, ...], dict[str, int]] = {}
    for week, *dims, count in issued:
        groups.setdefault((str(week), *dims), {})["issued"] = int(count)
    for week, *dims, accepted, overridden, answered_n in answered:
        counts = groups.setdefault((str(week), *dims), {})
        counts.update(accepted=int(accepted), overridden=int(overridden), answered=int(answered_n))
    return [Group(*key, **counts) for key, counts in sorted(groups.items(), key=_sort_key)]


def _sort_key(item: tuple[tuple[Any, ...], Any]) -> tuple[str, ...]:
    return tuple("" if v is None else str(v) for v in item[0])


def collect(engine: sa.Engine, window: Window | None = None) -> DashboardData:
    """Run every aggregate of the dashboard in one read transaction (one snapshot)."""
    window = window or Window()
    data = DashboardData(window)
    with engine.connect() as connection, connection.begin():
        data.groups = _merge(
            connection.execute(_issued_query(window)).all(),
            connection.execute(_answered_query(window)).all(),
        )
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
