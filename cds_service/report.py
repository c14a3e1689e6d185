"""``diazepam-cds report [--since DATE]``: per topic, how often cards were accepted or
overridden and why, read from the database the service writes.

Counts are of distinct cards (a card reported twice counts once per outcome); acceptance rate
is accepted / (accepted + overridden) among cards that got feedback, since cards nobody
answered say nothing either way. Feedback is dated by when the service received it, so a
report never depends on the EHR's clock. ``--iss`` (and ``--tenant``) limit the report to one
client's cards and feedback; feedback is only ever linked to a card issued to the same client,
so one client's outcomes never land on another's topics.

Per topic it also counts the cards computed at order-sign but not sent (``withheld_cards``):
**not repeated** (fire once, F.2a: shown at order-select for the same draft, user and order)
and **suppressed** (overridden at order-select, ``CDS_SUPPRESS_REPEATS``).

**Epic switch check** (F.2a): in the ``epic`` profile an alternative is an "Add X" suggestion
and the removal of the pended diazepam order is a separate one. A card whose feedback accepted
an "Add X" while no accepted removal of the same pended order (same client, patient and draft,
on any card) was received within the window (``CDS_SUPPRESS_WINDOW_S``, before or after) is
flagged: possible duplicate therapy, diazepam plus a muscle relaxant. A card whose feedback
accepted two or more "Add X" (over one or several calls) is counted apart (``several_added``:
two muscle relaxants at once; committee review round 3, M2), with or without a removal.
Counted per issuer, tenant and profile, from stored codes and keyed hashes only. The window,
rather than the same feedback call, because an EHR may report each accepted suggestion in its
own call; a removal done by hand in the EHR is invisible to the service, so a flag is a prompt
to look, not proof.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from cds_service.cli import _EXTRA_PARSERS, command
from cds_service.clinical.suggestions import ROLE_ADD, ROLE_REMOVE
from cds_service.config import ConfigError, load_settings
from cds_service.fire_once import REASON

FIRE_ONCE = REASON  # fire once: shown at order-select
UNKNOWN_CARD = "(unknown card)"
NO_REASON = "(no reason given)"
TOP_REASONS = 3


@dataclass
class TopicRow:
    topic: str
    issued: int = 0
    accepted: int = 0
    overridden: int = 0
    override_reasons: list[tuple[str, int]] = field(default_factory=list)
    not_repeated: int = 0  # withheld at order-sign: fire once (shown at order-select)
    suppressed: int = 0  # withheld at order-sign: overridden at order-select

    @property
    def acceptance_rate(self) -> float | None:
        answered = self.accepted + self.overridden
        return self.accepted / answered if answered else None


def topic_report(
    engine: sa.Engine,
    since: datetime | None = None,
    *,
    iss: str | None = None,
    tenant: str | None = None,
) -> list[TopicRow]:
    from cds_service.store.tables import as_naive_utc, feedback, issued_cards, withheld_cards

    cutoff = as_naive_utc(since) if since else None
    rows: dict[str, TopicRow] = {}

    def row(topic: str | None, known: bool = True) -> TopicRow:
        name = topic or ("(no topic)" if known else UNKNOWN_CARD)
        return rows.setdefault(name, TopicRow(name))

    issued = sa.select(issued_cards.c.topic_code, sa.func.count()).group_by(
        issued_cards.c.topic_code
    )
    answered = sa.select(
        feedback.c.topic_code,
        feedback.c.card_known,
        feedback.c.outcome,
        sa.func.count(sa.distinct(feedback.c.card_uuid)),
    ).group_by(feedback.c.topic_code, feedback.c.card_known, feedback.c.outcome)
    reasons = (
        sa.select(
            feedback.c.topic_code,
            feedback.c.card_known,
            feedback.c.override_code,
            sa.func.count(),
        )
        .where(feedback.c.outcome == "overridden")
        .group_by(feedback.c.topic_code, feedback.c.card_known, feedback.c.override_code)
    )
    if cutoff is not None:
        issued = issued.where(issued_cards.c.issued_at >= cutoff)
        answered = answered.where(feedback.c.received_at >= cutoff)
        reasons = reasons.where(feedback.c.received_at >= cutoff)
    if iss is not None:
        issued = issued.where(issued_cards.c.client_iss == iss)
        answered = answered.where(feedback.c.client_iss == iss)
        reasons = reasons.where(feedback.c.client_iss == iss)
    if tenant is not None:
        issued = issued.where(issued_cards.c.client_tenant == tenant)
        answered = answered.where(feedback.c.client_tenant == tenant)
        reasons = reasons.where(feedback.c.client_tenant == tenant)
    withheld = sa.select(
        withheld_cards.c.topic_code, withheld_cards.c.reason, sa.func.count()
    ).group_by(withheld_cards.c.topic_code, withheld_cards.c.reason)
    if cutoff is not None:
        withheld = withheld.where(withheld_cards.c.withheld_at >= cutoff)
    if iss is not None:
        withheld = withheld.where(withheld_cards.c.client_iss == iss)
    if tenant is not None:
        withheld = withheld.where(withheld_cards.c.client_tenant == tenant)
    reason_counts: dict[str, Counter[str]] = defaultdict(Counter)
    with engine.connect() as connection:
        for topic, why, count in connection.execute(withheld):
            if why == FIRE_ONCE:
                row(topic).not_repeated += count
            else:
                row(topic).suppressed += count
        for topic, count in connection.execute(issued):
            row(topic).issued += count
        for topic, known, outcome, count in connection.execute(answered):
            target = row(topic, bool(known))
            if outcome == "accepted":
                target.accepted += count
            elif outcome == "overridden":
                target.overridden += count
        for topic, known, code, count in connection.execute(reasons):
            reason_counts[row(topic, bool(known)).topic][code or NO_REASON] += count
    for name, counts in reason_counts.items():
        rows[name].override_reasons = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[
            :TOP_REASONS
        ]
    return sorted(rows.values(), key=lambda r: (r.topic == UNKNOWN_CARD, -r.issued, r.topic))


def render_table(rows: list[TopicRow]) -> str:
    headers = (
        "Topic",
        "Issued",
        "Accepted",
        "Overridden",
        "Acceptance",
        "Top override reasons",
        "Not repeated",
        "Suppressed",
    )
    body = [
        (
            r.topic,
            str(r.issued),
            str(r.accepted),
            str(r.overridden),
            "-" if r.acceptance_rate is None else f"{r.acceptance_rate:.1%}",
            ", ".join(f"{code} ({n})" for code, n in r.override_reasons) or "-",
            str(r.not_repeated),
            str(r.suppressed),
        )
        for r in rows
    ]
    return _table(headers, body, left=(0, 5), empty="(no cards issued and no feedback)")


def _table(
    headers: tuple[str, ...], body: list[tuple[str, ...]], *, left: tuple[int, ...], empty: str
) -> str:
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def fmt(line: tuple[str, ...]) -> str:
        cells = [
            cell.ljust(widths[i]) if i in left else cell.rjust(widths[i])
            for i, cell in enumerate(line)
        ]
        return "  ".join(cells).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(line) for line in body] or [empty]
    return "\n".join(lines)


@dataclass
class SwitchRow:
    """Epic switch check for one client and profile: cards whose feedback accepted an "Add X"
    (``additions``), those with an accepted removal of the same pended order in the window
    (``with_removal``), and the rest (``flagged``: possible duplicate therapy)."""

    issuer: str | None
    tenant: str | None
    profile: str | None
    additions: int = 0
    with_removal: int = 0
    several_added: int = 0  # cards with two or more "Add X" accepted: two relaxants at once

    @property
    def flagged(self) -> int:
        return self.additions - self.with_removal


def switch_report(
    engine: sa.Engine,
    since: datetime | None = None,
    *,
    iss: str | None = None,
    tenant: str | None = None,
    window_s: int = 3600,
) -> list[SwitchRow]:
    """The Epic switch check (module docstring), from accepted feedback linked to its card."""
    from cds_service.store.tables import as_naive_utc, feedback, issued_cards

    query = (
        sa.select(
            feedback.c.card_uuid,
            feedback.c.accepted_suggestions,
            feedback.c.received_at,
            issued_cards.c.suggestion_roles,
            issued_cards.c.order_id,
            issued_cards.c.patient_hash,
            issued_cards.c.profile,
            issued_cards.c.client_iss,
            issued_cards.c.client_tenant,
        )
        .join(issued_cards, issued_cards.c.card_uuid == feedback.c.card_uuid)
        .where(
            feedback.c.outcome == "accepted",
            feedback.c.card_known.is_(True),
            feedback.c.service_id == issued_cards.c.service_id,
            feedback.c.client_iss.is_not_distinct_from(issued_cards.c.client_iss),
            feedback.c.client_tenant.is_not_distinct_from(issued_cards.c.client_tenant),
            issued_cards.c.suggestion_roles.is_not(None),
        )
    )
    if iss is not None:
        query = query.where(issued_cards.c.client_iss == iss)
    if tenant is not None:
        query = query.where(issued_cards.c.client_tenant == tenant)
    cutoff = as_naive_utc(since) if since else None
    window = timedelta(seconds=window_s)
    removals: dict[tuple[Any, ...], list[datetime]] = defaultdict(list)
    additions: dict[str, tuple[tuple[Any, ...], tuple[Any, ...], list[datetime], set[str]]] = {}
    with engine.connect() as connection:
        for row in connection.execute(query):
            roles = row.suggestion_roles
            accepted = row.accepted_suggestions
            if isinstance(roles, str):  # a driver that hands JSON back as text
                roles = json.loads(roles)
            if isinstance(accepted, str):
                accepted = json.loads(accepted)
            if not isinstance(roles, dict) or not isinstance(accepted, list):
                continue  # a card without suggestion roles (JSON null) or without suggestions
            chosen = {roles.get(s) for s in accepted if isinstance(s, str)}
            client = (row.client_iss, row.client_tenant)
            order = (*client, row.patient_hash, row.order_id or f"card:{row.card_uuid}")
            if ROLE_REMOVE in chosen:
                removals[order].append(row.received_at)
            if ROLE_ADD in chosen and (cutoff is None or row.received_at >= cutoff):
                entry = additions.setdefault(
                    row.card_uuid, (order, (*client, row.profile), [], set())
                )
                entry[2].append(row.received_at)
                entry[3].update(
                    s for s in accepted if isinstance(s, str) and roles.get(s) == ROLE_ADD
                )
    rows: dict[tuple[Any, ...], SwitchRow] = {}
    for order, group, moments, added in additions.values():
        target = rows.setdefault(group, SwitchRow(*group))
        target.additions += 1
        if len(added) >= 2:
            target.several_added += 1
        removed = removals.get(order, [])
        if all(any(abs(r - m) <= window for r in removed) for m in moments):
            target.with_removal += 1
    return sorted(
        rows.values(), key=lambda r: (-r.flagged, str(r.issuer), str(r.tenant), str(r.profile))
    )


def render_switches(rows: list[SwitchRow]) -> str:
    headers = (
        "Issuer",
        "Tenant",
        "Profile",
        "Add X accepted",
        "With removal",
        "Flagged",
        "Two or more added",
    )
    body = [
        (
            r.issuer or "(no issuer)",
            r.tenant or "-",
            r.profile or "-",
            str(r.additions),
            str(r.with_removal),
            str(r.flagged),
            str(r.several_added),
        )
        for r in rows
    ]
    return _table(headers, body, left=(0, 1, 2), empty="(no alternative added by feedback)")


def parse_since(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO date or date-time (e.g. 2026-01-31), got {text!r}"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _add_report(sub: Any) -> None:
    p = sub.add_parser("report", help="acceptance and override counts per card topic")
    p.add_argument("--since", type=parse_since, default=None, help="ISO date or date-time (UTC)")
    p.add_argument(
        "--until",
        type=parse_since,
        default=None,
        help="with --html: last day of cards issued (ISO date, inclusive)",
    )
    p.add_argument(
        "--html",
        metavar="FILE",
        default=None,
        help="write the committee dashboard (charts, tables, exports) as one self-contained "
        "HTML file; --since/--until select cards by the day they were issued",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--iss", default=None, help="only cards and feedback of this JWT issuer")
    p.add_argument("--tenant", default=None, help="only cards and feedback of this tenant")
    p.add_argument(
        "--switches",
        action="store_true",
        help="with --json: print the Epic switch check (alternatives added without removing "
        "the pended diazepam order) instead of the topic rows",
    )


_EXTRA_PARSERS.append(_add_report)


@command("report")
def report(args: argparse.Namespace) -> int:
    from cds_service.store import open_store

    settings = load_settings()
    if args.html:
        return _html_report(args, settings)
    store = open_store(settings)
    try:
        rows = topic_report(store.engine, args.since, iss=args.iss, tenant=args.tenant)
        switches = switch_report(
            store.engine,
            args.since,
            iss=args.iss,
            tenant=args.tenant,
            window_s=settings.suppress_window_s,
        )
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(f"report query failed: {type(exc).__name__}: {exc}") from exc
    finally:
        store.dispose()
    if args.json and args.switches:
        json.dump(
            [{**asdict(r), "flagged": r.flagged} for r in switches], sys.stdout, indent=2
        )
        sys.stdout.write("\n")
    elif args.json:
        out = [
            {
                **asdict(r),
                "acceptance_rate": r.acceptance_rate,
                "override_reasons": [{"code": code, "count": n} for code, n in r.override_reasons],
            }
            for r in rows
        ]
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        since = f" since {args.since.isoformat()}" if args.since else ""
        scope = "".join(
            f" {name} {value}"
            for name, value in (("for issuer", args.iss), ("tenant", args.tenant))
            if value
        )
        print(f"Card outcomes per topic{scope}{since}\n")
        print(render_table(rows))
        print(
            "\nEpic switch check: 'Add X' accepted without removing the pended diazepam order "
            f"(within {settings.suppress_window_s} s): possible duplicate therapy{scope}{since}\n"
        )
        print(render_switches(switches))
    return 0


def _html_report(args: argparse.Namespace, settings: Any) -> int:
    """The dashboard as one file: the same renderer as ``GET /admin/dashboard``, the exports
    inline (``data:`` links) so it works offline and by e-mail."""
    from pathlib import Path

    from cds_service.clinical.cards import load_templates
    from cds_service.dashboard.build import dashboard_html, labels_for
    from cds_service.dashboard.query import Window
    from cds_service.store import open_store

    window = Window(
        args.since.date() if args.since else None, args.until.date() if args.until else None
    )
    labels = labels_for(load_templates(settings.cards_dir))
    store = open_store(settings)
    try:
        html = dashboard_html(store.engine, window, labels, standalone=True)
    except sa.exc.SQLAlchemyError as exc:
        raise ConfigError(f"report query failed: {type(exc).__name__}: {exc}") from exc
    finally:
        store.dispose()
    Path(args.html).write_text(html, encoding="utf-8", newline="\n")
    print(f"dashboard ({window.describe()}) -> {args.html}")
    return 0
