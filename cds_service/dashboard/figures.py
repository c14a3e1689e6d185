"""The dashboard's figures: each a chart and the table it is drawn from, built from the
aggregates of ``query`` only. The table is the figure's data (shown beside the chart, exported
as CSV and JSON); the chart is a picture of some of its columns. Figures are data: the page
renderer draws any list of them the same way.

What each figure means is said in ``meaning`` (shown under its title and in the README).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cds_service.dashboard.query import DashboardData, Group
from cds_service.dashboard.stats import Rate

NONE = "(none)"
TOP_REASONS_PER_TOPIC = 5
TOP_REASONS_CHART = 10
SIGN_SERVICE = "diazepam-order-sign"


@dataclass(frozen=True)
class Series:
    name: str
    values: list[float | None]
    # optional 95 % interval per value (low, high), drawn as error bars
    intervals: list[tuple[float, float] | None] | None = None


@dataclass(frozen=True)
class Chart:
    kind: str  # "bar", "hbar", "stacked", "line"
    labels: list[str]
    series: list[Series]
    x_title: str
    y_title: str
    percent: bool = False


@dataclass(frozen=True)
class Table:
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class Figure:
    id: str
    title: str
    meaning: str
    chart: Chart
    table: Table
    section: str = ""


@dataclass(frozen=True)
class Labels:
    """Displays of the codes the store keeps, from the published CodeSystems (card templates):
    the committee reads "Benzodiazepine in an older adult", not ``beers-benzodiazepine``."""

    topics: Mapping[str, str] = field(default_factory=dict)
    reasons: Mapping[str, str] = field(default_factory=dict)

    def topic(self, code: str | None) -> str:
        return self.topics.get(code or "", code or "(no topic)")

    def reason(self, code: str | None) -> str:
        """The CodeSystem's display; a code the service never offered is shown as sent (the
        display a client sent with it is free text, never shown)."""
        if not code:
            return "(no reason given)"
        return self.reasons.get(code) or code


def _pct(rate: Rate) -> list[Any]:
    """Rate, low and high as percentages with one decimal; blanks without trials."""
    interval = rate.interval
    if rate.value is None or interval is None:
        return ["", "", ""]
    return [round(100 * rate.value, 1), round(100 * interval[0], 1), round(100 * interval[1], 1)]


def _sum(groups: list[Group], key: Callable[[Group], Any]) -> dict[Any, Counter[str]]:
    out: dict[Any, Counter[str]] = defaultdict(Counter)
    for g in groups:
        out[key(g)].update(
            issued=g.issued, accepted=g.accepted, overridden=g.overridden, answered=g.answered
        )
    return out


def _topics(data: DashboardData) -> list[str | None]:
    totals = _sum(data.groups, lambda g: g.topic)
    return sorted(totals, key=lambda t: (-totals[t]["issued"], t or ""))


def outcome_figures(data: DashboardData, labels: Labels) -> list[Figure]:
    by_topic = _sum(data.groups, lambda g: g.topic)
    topics = _topics(data)
    names = [labels.topic(t) for t in topics]
    no_response = [by_topic[t]["issued"] - by_topic[t]["answered"] for t in topics]
    outcomes = Figure(
        "outcomes",
        "Cards issued per topic, and what clinicians did",
        "Every card issued in the window, by topic: accepted (a suggestion taken or the card "
        "acknowledged), overridden (dismissed, with or without a reason) or no response (the EHR "
        "sent no feedback). The bars add up to the cards issued.",
        Chart(
            "stacked",
            names,
            [
                Series("accepted", [by_topic[t]["accepted"] for t in topics]),
                Series("overridden", [by_topic[t]["overridden"] for t in topics]),
                Series("no response", no_response),
            ],
            "topic",
            "cards",
        ),
        Table(
            ["topic", "display", "issued", "accepted", "overridden", "no response"],
            [
                [
                    t or NONE,
                    labels.topic(t),
                    by_topic[t]["issued"],
                    by_topic[t]["accepted"],
                    by_topic[t]["overridden"],
                    no,
                ]
                for t, no in zip(topics, no_response, strict=True)
            ],
        ),
        "Outcomes",
    )
    rates = {t: by_topic[t] for t in topics}
    acceptance = [Rate(rates[t]["accepted"], rates[t]["answered"]) for t in topics]
    override = [Rate(rates[t]["overridden"], rates[t]["answered"]) for t in topics]
    response = [Rate(rates[t]["answered"], rates[t]["issued"]) for t in topics]

    def series(name: str, values: list[Rate]) -> Series:
        return Series(
            name,
            [None if r.value is None else 100 * r.value for r in values],
            [
                None if r.interval is None else (100 * r.interval[0], 100 * r.interval[1])
                for r in values
            ],
        )

    rate_figure = Figure(
        "rates",
        "Acceptance and override rates per topic, with 95 % Wilson intervals",
        "Of the cards that got a response, the share accepted and the share overridden; the "
        "whiskers are 95 % Wilson score intervals, wide where few cards were answered. The "
        "response rate (answered of issued) says how much of the topic the rates speak for.",
        Chart(
            "bar",
            names,
            [series("acceptance", acceptance), series("override", override)],
            "topic",
            "% of answered cards",
            percent=True,
        ),
        Table(
            [
                "topic",
                "answered",
                "acceptance %",
                "acceptance low %",
                "acceptance high %",
                "override %",
                "override low %",
                "override high %",
                "response %",
            ],
            [
                [t or NONE, a.trials, *_pct(a), *_pct(o), _pct(r)[0]]
                for t, a, o, r in zip(topics, acceptance, override, response, strict=True)
            ],
        ),
        "Outcomes",
    )
    return [outcomes, rate_figure]


def reason_figure(data: DashboardData, labels: Labels) -> Figure:
    overall: Counter[str | None] = Counter()
    per_topic: dict[str | None, list[tuple[str | None, int]]] = defaultdict(list)
    for topic, code, n in data.reasons:
        overall[code] += n
        per_topic[topic].append((code, n))
    top = sorted(overall.items(), key=lambda kv: (-kv[1], kv[0] or ""))[:TOP_REASONS_CHART]
    rows = []
    for topic in sorted(per_topic, key=lambda t: t or ""):
        ranked = sorted(per_topic[topic], key=lambda kv: (-kv[1], kv[0] or ""))
        for code, n in ranked[:TOP_REASONS_PER_TOPIC]:
            rows.append([topic or NONE, code or NONE, labels.reason(code), n])
    return Figure(
        "reasons",
        "Top override reasons",
        "Why clinicians dismissed cards: the coded reasons they chose (displays from the "
        "service's override-reason CodeSystem), over all topics in the chart and the five most "
        'frequent per topic in the table. "(no reason given)" is an override without a code.',
        Chart(
            "hbar",
            [labels.reason(code) for code, _ in top],
            [Series("overridden cards", [n for _, n in top])],
            "override reason",
            "overridden cards",
        ),
        Table(["topic", "reason code", "reason", "overridden cards"], rows),
        "Outcomes",
    )


def _taken_label(kind: str | None, drug: str | None) -> str:
    if kind is None:
        return "(suggestion not recorded)"
    verbs = {
        "replace": "switch to",
        "add": "add",
        "create": "add",
        "update": "keep, changed:",
        "delete": "cancel",
        "remove": "remove",
    }
    return f"{verbs.get(kind, kind)} {drug or '(drug not named)'}"


def taken_figure(data: DashboardData, labels: Labels) -> Figure:
    totals: Counter[str] = Counter()
    rows = []
    for topic, kind, drug, code, n in sorted(
        data.taken, key=lambda r: (-r[4], *("" if v is None else str(v) for v in r[:4]))
    ):
        label = _taken_label(kind, drug)
        totals[label] += n
        rows.append([topic or NONE, kind or NONE, drug or NONE, code or "", label, n])
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return Figure(
        "taken",
        "Which suggestion was taken, by alternative drug",
        "Accepted cards by the suggestion the clinician took: a switch to an alternative (in "
        'the Epic profile, "remove diazepam" and "add" the alternative are two suggestions), '
        "diazepam kept but changed (shorter, lower dose), cancelled, or a drug added beside it "
        "(naloxone). Cards issued before the service recorded suggestions show as not recorded.",
        Chart(
            "hbar",
            [label for label, _ in ranked],
            [Series("accepted cards", [n for _, n in ranked])],
            "suggestion taken",
            "accepted cards",
        ),
        Table(["topic", "kind", "drug", "RxNorm code", "suggestion", "accepted cards"], rows),
        "Outcomes",
    )


def trend_figures(data: DashboardData, labels: Labels) -> list[Figure]:
    weeks = data.weeks()
    by = _sum(data.groups, lambda g: (g.topic, g.week))
    figures = []
    for topic in _topics(data):
        cells = {w: by.get((topic, w), Counter()) for w in weeks}
        figures.append(
            Figure(
                f"trend-{topic or 'none'}",
                f"Weekly: {labels.topic(topic)}",
                "Cards of this topic issued each week (Monday to Sunday, UTC), and how many of "
                "them were accepted and overridden. A quiet week shows as zero.",
                Chart(
                    "line",
                    weeks,
                    [
                        Series(name, [cells[w][name] for w in weeks])
                        for name in ("issued", "accepted", "overridden")
                    ],
                    "week starting",
                    "cards",
                ),
                Table(
                    ["week", "issued", "accepted", "overridden"],
                    [
                        [w, cells[w]["issued"], cells[w]["accepted"], cells[w]["overridden"]]
                        for w in weeks
                    ],
                ),
                "Trends",
            )
        )
    return figures


def burden_figure(data: DashboardData) -> Figure:
    weeks = data.weeks()
    per: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for week, service, *counts in data.calls:
        per[week][service] = list(counts)
    rows, per_order, per_100 = [], [], []
    for w in weeks:
        services = per.get(w, {})
        calls_select = sum(c[0] for s, c in services.items() if s != SIGN_SERVICE)
        sign = services.get(SIGN_SERVICE, [0, 0, 0, 0, 0])
        orders = sum(c[2] for c in services.values())
        cards = sum(c[3] for c in services.values())
        a = round(cards / orders, 2) if orders else None
        b = round(100 * sign[3] / sign[0], 1) if sign[0] else None
        per_order.append(a)
        per_100.append(b)
        rows.append(
            [
                w,
                calls_select,
                sign[0],
                orders,
                cards,
                sign[3],
                "" if a is None else a,
                "" if b is None else b,
            ]
        )
    return Figure(
        "burden",
        "Alert burden",
        "How much the service interrupts: cards per diazepam order advised on (both hooks), "
        "and order-sign cards per 100 order-sign calls (every order a clinician signs calls "
        "the service, diazepam or not). Counted from the service's per-day hook-call counters.",
        Chart(
            "line",
            weeks,
            [
                Series("cards per diazepam order", per_order),
                Series("order-sign cards per 100 order-sign calls", per_100),
            ],
            "week starting",
            "cards",
        ),
        Table(
            [
                "week",
                "order-select calls",
                "order-sign calls",
                "diazepam orders",
                "cards",
                "order-sign cards",
                "cards per diazepam order",
                "order-sign cards per 100 calls",
            ],
            rows,
        ),
        "Alert burden",
    )


BREAKDOWNS: list[tuple[str, str, str, Callable[[Group], Any]]] = [
    ("by-service", "By service", "service", lambda g: g.service),
    ("by-indicator", "By indicator", "indicator", lambda g: g.indicator),
    ("by-profile", "By EHR profile", "EHR profile", lambda g: g.profile),
    ("by-issuer", "By client issuer", "client issuer (JWT iss)", lambda g: g.issuer),
]


def breakdown_figures(data: DashboardData) -> list[Figure]:
    figures = []
    for fid, title, axis, key in BREAKDOWNS:
        totals = _sum(data.groups, key)
        values = sorted(totals, key=lambda v: (-totals[v]["issued"], "" if v is None else str(v)))
        names = [NONE if v is None else str(v) for v in values]
        rows = [
            [
                name,
                totals[v]["issued"],
                totals[v]["accepted"],
                totals[v]["overridden"],
                totals[v]["issued"] - totals[v]["answered"],
            ]
            for name, v in zip(names, values, strict=True)
        ]
        figures.append(
            Figure(
                fid,
                title,
                f'Cards issued by {axis}, split by what clinicians did. "{NONE}": not '
                "recorded (no client with CDS_AUTH=disabled; no profile before the dashboard).",
                Chart(
                    "stacked",
                    names,
                    [
                        Series("accepted", [r[2] for r in rows]),
                        Series("overridden", [r[3] for r in rows]),
                        Series("no response", [r[4] for r in rows]),
                    ],
                    axis,
                    "cards",
                ),
                Table([axis, "issued", "accepted", "overridden", "no response"], rows),
                "Breakdowns",
            )
        )
    return figures


def suppression_figure(data: DashboardData, labels: Labels) -> Figure:
    rows = sorted(data.suppressed, key=lambda r: (-r[2], r[0] or "", r[1] or ""))
    return Figure(
        "suppressed",
        "Repeat suppression at work",
        "Cards not shown again at order-sign because the same clinician overrode that topic "
        "for the same draft order at order-select (CDS_SUPPRESS_REPEATS), by topic and the "
        "override reason that silenced them.",
        Chart(
            "hbar",
            [f"{labels.topic(t)}, after: {labels.reason(c)}" for t, c, _ in rows],
            [Series("suppressed cards", [n for _, _, n in rows])],
            "topic and override",
            "suppressed cards",
        ),
        Table(
            ["topic", "override reason code", "override reason", "suppressed cards"],
            [[t or NONE, c or NONE, labels.reason(c), n] for t, c, n in rows],
        ),
        "Repeat suppression",
    )


def build_figures(data: DashboardData, labels: Labels) -> list[Figure]:
    return [
        *outcome_figures(data, labels),
        reason_figure(data, labels),
        taken_figure(data, labels),
        *trend_figures(data, labels),
        burden_figure(data),
        *breakdown_figures(data),
        suppression_figure(data, labels),
    ]
