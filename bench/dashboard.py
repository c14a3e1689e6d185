"""Dashboard at scale (issue 16): how long the committee dashboard takes over a store holding
one million issued cards. A benchmark, not a timed test: run it by hand.

    .venv/bin/python -m bench.dashboard                  # 1 000 000 cards in a temp SQLite file
    .venv/bin/python -m bench.dashboard --cards 200000 --keep var/bench-dash.sqlite3

Synthetic rows are bulk-inserted with the store's own table definitions (schema by the real
migrations): 52 weeks, 12 topics (each at one or two indicator levels), both services,
three issuers (one of them on the epic profile); about 35 % of cards answered (accepted
or overridden, with a reason), suggestions for half of them, a few thousand suppressions and a
year of hook-call counters. Then the dashboard page is rendered end to end (SQL aggregates,
figures, SVG, HTML) several times; the best and median are printed with the per-stage split.
Budget: under 2 s (issue 16). Results are also appended to bench/results/dashboard.md.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cds_service.dashboard.build import dashboard_html, figures, labels_for
from cds_service.dashboard.query import Window, collect
from cds_service.store import Store
from cds_service.store.store import count_key
from cds_service.store.tables import (
    accepted_suggestions,
    card_counts,
    feedback,
    hook_call_counts,
    issued_cards,
    issued_suggestions,
    suppressed_cards,
)

BUDGET_S = 2.0
TOPICS = [f"topic-{i:02d}" for i in range(12)]
SERVICES = ["diazepam-order-sign", "diazepam-order-select"]
INDICATORS = ["info", "warning", "critical"]
# As in a deployment: a client's profile is its issuer's (trusted-issuers file), and a topic
# fires at one or two indicator levels (its template's variants), not at any of three.
ISSUERS = {
    "https://ehr-a.example.org": "standard",
    "https://ehr-b.example.org": "standard",
    "https://ehr-c.example.org": "epic",
}
LEVELS = {t: INDICATORS[i % 3 : i % 3 + 2] or INDICATORS[-1:] for i, t in enumerate(TOPICS)}
REASONS = ["patient-preference", "failed-alternatives", "beers-exception", None]
DRUGS = [
    ("replace", "tizanidine"),
    ("replace", "baclofen"),
    ("update", "diazepam"),
    ("remove", "diazepam"),
    ("create", "naloxone"),
]
START = datetime(2025, 12, 1)
BATCH = 20_000


def seed(store: Store, cards: int, rng: random.Random) -> None:
    hash64 = "0" * 64
    feedback_id = 0
    counts: dict[tuple[Any, ...], list[int]] = {}
    with store.engine.begin() as connection:
        for start in range(0, cards, BATCH):
            card_rows, fb_rows, sug_rows, acc_rows = [], [], [], []
            for _ in range(min(BATCH, cards - start)):
                card = uuid.uuid4().hex
                iss = rng.choice(list(ISSUERS))
                when = START + timedelta(seconds=rng.randrange(364 * 86400))
                topic = rng.choice(TOPICS)
                row = {
                    "card_uuid": card,
                    "service_id": rng.choice(SERVICES),
                    "hook_instance": "h",
                    "topic_code": topic,
                    "indicator": rng.choice(LEVELS[topic]),
                    "suggestion_uuids": [],
                    "audit": {},
                    "order_id": None,
                    "patient_hash": hash64,
                    "user_hash": hash64,
                    "issued_at": when,
                    "accepted": False,
                    "overridden": False,
                    "override_code": None,
                    "client_iss": iss,
                    "client_tenant": None,
                    "profile": ISSUERS[iss],
                }
                card_rows.append(row)
                suggestion = None
                if rng.random() < 0.5:
                    suggestion = uuid.uuid4().hex
                    kind, drug = rng.choice(DRUGS)
                    sug_rows.append(
                        {
                            "suggestion_uuid": suggestion,
                            "card_uuid": card,
                            "kind": kind,
                            "drug": drug,
                            "code": None,
                        }
                    )
                roll = rng.random()
                if roll < 0.35:
                    feedback_id += 1
                    accepted = roll < 0.15 and suggestion is not None
                    fb_rows.append(
                        {
                            "id": feedback_id,
                            "item_hash": f"{feedback_id:064d}",
                            "service_id": "diazepam-order-sign",
                            "card_uuid": card,
                            "card_known": True,
                            "topic_code": topic,
                            "outcome": "accepted" if accepted else "overridden",
                            "accepted_suggestions": [suggestion] if accepted else [],
                            "override_code": None if accepted else rng.choice(REASONS),
                            "override_system": None,
                            "override_display": None,
                            "user_comment": None,
                            "outcome_at": when,
                            "received_at": when,
                            "client_iss": None,
                            "client_tenant": None,
                        }
                    )
                    # what the feedback store does to the card (Store._mark_card)
                    if accepted:
                        row["accepted"] = True
                        acc_rows.append(
                            {
                                "card_uuid": card,
                                "suggestion_uuid": suggestion,
                                "topic_code": topic,
                                "kind": kind,
                                "drug": drug,
                                "code": None,
                                "issued_at": when,
                            }
                        )
                    else:
                        row["overridden"] = True
                        row["override_code"] = fb_rows[-1]["override_code"]
            connection.execute(issued_cards.insert(), card_rows)
            # what the store's write path keeps per day and dimension (Store._insert_cards,
            # Store._mark_card), added up for the batch
            for row in card_rows:
                key = tuple(count_key(row).items())
                total = counts.setdefault(key, [0, 0, 0, 0])
                total[0] += 1
                total[1] += row["accepted"]
                total[2] += row["overridden"]
                total[3] += row["accepted"] or row["overridden"]
            if fb_rows:
                connection.execute(feedback.insert(), fb_rows)
            if sug_rows:
                connection.execute(issued_suggestions.insert(), sug_rows)
            if acc_rows:
                connection.execute(accepted_suggestions.insert(), acc_rows)
        connection.execute(
            card_counts.insert(),
            [
                {
                    **dict(key),
                    "issued": t[0],
                    "accepted": t[1],
                    "overridden": t[2],
                    "answered": t[3],
                }
                for key, t in counts.items()
            ],
        )
        connection.execute(
            suppressed_cards.insert(),
            [
                {
                    "suppressed_at": START + timedelta(seconds=rng.randrange(364 * 86400)),
                    "service_id": "diazepam-order-sign",
                    "topic_code": rng.choice(TOPICS),
                    "indicator": "warning",
                    "profile": "standard",
                    "override_code": rng.choice(REASONS),
                    "override_system": None,
                    "client_iss": None,
                    "client_tenant": None,
                }
                for _ in range(5000)
            ],
        )
        per_day = cards // 364 // 2 or 1
        connection.execute(
            hook_call_counts.insert(),
            [
                {
                    "day": (START + timedelta(days=d)).date(),
                    "service_id": service,
                    "profile": profile,
                    "client_iss": iss,
                    "client_tenant": "",
                    "calls": per_day * 20,
                    "calls_with_orders": per_day,
                    "diazepam_orders": per_day,
                    "cards": per_day * 2,
                    "suppressed": 3,
                }
                for d in range(364)
                for service in SERVICES
                for iss, profile in ISSUERS.items()
            ],
        )
    with store.engine.connect() as connection:
        connection.exec_driver_sql("ANALYZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--keep", default=None, help="SQLite file to create and keep")
    parser.add_argument("--seed", type=int, default=16)
    args = parser.parse_args(argv)
    path = Path(args.keep) if args.keep else Path(tempfile.mkdtemp()) / "dash.sqlite3"
    store = Store(f"sqlite:///{path}")
    store.upgrade()
    with store.engine.connect() as connection:
        have = connection.execute(sa.select(sa.func.count()).select_from(issued_cards)).scalar()
    if not have:
        started = time.perf_counter()
        seed(store, args.cards, random.Random(args.seed))
        print(f"seeded {args.cards:,} cards in {time.perf_counter() - started:.1f} s ({path})")
    with store.engine.connect() as connection:
        cards = connection.execute(sa.select(sa.func.count()).select_from(issued_cards)).scalar()
        answered = connection.execute(sa.select(sa.func.count()).select_from(feedback)).scalar()
    from cds_service.clinical.cards import load_templates
    from cds_service.config import Settings

    labels = labels_for(load_templates(Settings().cards_dir))
    window = Window()
    totals, sql, cpu = [], [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        collect(store.engine, window)
        sql.append(time.perf_counter() - started)
        started, cpu_started = time.perf_counter(), time.process_time()
        html = dashboard_html(store.engine, window, labels)
        totals.append(time.perf_counter() - started)
        # CPU seconds of this process (SQLite runs in it): what a loaded machine cannot inflate
        cpu.append(time.process_time() - cpu_started)
    found, _ = figures(store.engine, window, labels)
    last_year = Window(date(2026, 6, 1), date(2026, 11, 30))
    started = time.perf_counter()
    dashboard_html(store.engine, last_year, labels)
    half = time.perf_counter() - started
    best, median = min(totals), statistics.median(totals)
    lines = [
        f"dashboard over {cards:,} issued cards and {answered:,} feedback items (SQLite, "
        f"{len(found)} figures, page {len(html) / 1e6:.1f} MB):",
        f"  whole page: best {best:.2f} s, median {median:.2f} s over {args.runs} runs "
        f"(SQL aggregates alone: median {statistics.median(sql):.2f} s); "
        f"a six-month window: {half:.2f} s",
        f"  CPU of the whole page: median {statistics.median(cpu):.2f} s "
        f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores during the run)",
        f"  budget {BUDGET_S:.0f} s: {'within' if median < BUDGET_S else 'OVER'}",
    ]
    print("\n".join(lines))
    results = Path(__file__).resolve().parent / "results" / "dashboard.md"
    with results.open("a", encoding="utf-8") as out:
        out.write(f"\n{datetime.now().isoformat(timespec='seconds')}\n" + "\n".join(lines) + "\n")
    store.dispose()
    return 0 if median < BUDGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
