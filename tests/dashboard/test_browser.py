"""Issue 16, "Done means": the store seeded through the real API (signed hook calls and
feedback over four weeks), both pages opened in headless Chromium (Debian's package, driven
by Playwright), every chart checked as drawn — one SVG per figure, its axis titles, as many
series and points as the seeded data has — every table checked against counts taken from the
store with SQL of the test's own, and the ``report --html`` file opened offline showing the
same figures. Screenshots are taken every run; CDS_SCREENSHOTS=docs writes them to docs/img/
for the README.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service.cli import main
from tests.dashboard.seed import ADMIN_TOKEN, WEEKS, build_app, seed
from tests.security.helpers import jwks_of, write_key
from tests.support.browser import browser, require_browser, serving

REPO = Path(__file__).resolve().parents[2]
# the README's screenshots: retaken into docs/img/ only when asked
# (CDS_SCREENSHOTS=docs .venv/bin/python -m pytest tests/dashboard/test_browser.py), so that a
# test run leaves the working tree as it found it; otherwise they go under the test's tmp_path
DOCS_IMG = REPO / "docs" / "img"

# what each chart kind draws per data point
POINT = {"line": "circle.dot", "bar": "rect.rect", "stacked": "rect.rect", "hbar": "rect.rect"}


def write_issuers_in(directory: Path) -> Callable[..., Path]:
    def _write(*entries: dict[str, Any]) -> Path:
        issuers = []
        for i, entry in enumerate(entries):
            entry = dict(entry)
            keys = entry.pop("keys")
            (directory / f"jwks-{i}.json").write_text(json.dumps(jwks_of(*keys)))
            issuers.append({**entry, "jwks_file": f"jwks-{i}.json"})
        path = directory / "issuers.json"
        path.write_text(json.dumps({"issuers": issuers}), encoding="utf-8")
        return path

    return _write


def store_counts(engine: sa.Engine) -> dict[str, Any]:
    """The figures the tables must show, counted straight from the store's tables."""
    with engine.connect() as c:
        issued = dict(
            c.execute(
                sa.text("SELECT topic_code, count(*) FROM issued_cards GROUP BY topic_code")
            ).all()
        )
        outcome = {
            (t, o): n
            for t, o, n in c.execute(
                sa.text(
                    "SELECT i.topic_code, f.outcome, count(DISTINCT f.card_uuid) FROM feedback f "
                    "JOIN issued_cards i ON i.card_uuid = f.card_uuid WHERE f.card_known "
                    "GROUP BY i.topic_code, f.outcome"
                )
            ).all()
        }
        answered = dict(
            c.execute(
                sa.text(
                    "SELECT i.topic_code, count(DISTINCT f.card_uuid) FROM feedback f "
                    "JOIN issued_cards i ON i.card_uuid = f.card_uuid WHERE f.card_known "
                    "GROUP BY i.topic_code"
                )
            ).all()
        )
        by_profile = dict(
            c.execute(sa.text("SELECT profile, count(*) FROM issued_cards GROUP BY profile")).all()
        )
        by_issuer = dict(
            c.execute(
                sa.text("SELECT client_iss, count(*) FROM issued_cards GROUP BY client_iss")
            ).all()
        )
        suppressed = c.execute(sa.text("SELECT count(*) FROM suppressed_cards")).scalar_one()
        sign_calls = c.execute(
            sa.text(
                "SELECT sum(calls) FROM hook_call_counts WHERE service_id = 'diazepam-order-sign'"
            )
        ).scalar_one()
    return {
        "issued": issued,
        "outcome": outcome,
        "answered": answered,
        "by_profile": by_profile,
        "by_issuer": by_issuer,
        "suppressed": suppressed,
        "sign_calls": sign_calls,
    }


def read_figures(page: Any) -> dict[str, dict[str, Any]]:
    """Every figure on the page as the browser has it: its SVG's parts and its table."""
    return page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('section.figure')].map(s => {
            const svg = s.querySelectorAll('.chart svg');
            const one = svg[0];
            const q = (sel) => one ? [...one.querySelectorAll(sel)] : [];
            return [s.dataset.figure, {
              svgs: svg.length,
              titles: q('g.titles text.title').map(t => t.textContent),
              legends: q('g.legends g.legend').length,
              series: q('g.plot.overlay > g.series').length,
              dots: q('g.plot.overlay circle.dot').length,
              rects: q('g.plot rect.rect').length,
              xlabels: q('g.axis.x text').map(t => t.textContent),
              ylabels: q('g.axis.y text').map(t => t.textContent),
              columns: [...s.querySelectorAll('table thead th')].map(t => t.textContent),
              rows: [...s.querySelectorAll('table tbody tr')].map(r =>
                       [...r.querySelectorAll('td')].map(t => t.textContent)),
              exports: [...s.querySelectorAll('.exports a')].map(a => a.getAttribute('href')),
            }];
        }))"""
    )


def number(text: str) -> float:
    return float(text)


def check_charts(figures: dict[str, dict[str, Any]], weeks: list[str]) -> None:
    for fid, f in figures.items():
        assert f["svgs"] == 1, f"{fid}: {f['svgs']} SVG charts"
        assert f["exports"] and len(f["exports"]) == 2, fid
        values = [r for r in f["rows"] if len(r) > 1]
        assert values, f"{fid}: empty table"
    # trends: one point per week and series, x axis = the weeks, both axes titled
    for fid, f in figures.items():
        if fid.startswith("trend-") or fid == "burden":
            assert f["xlabels"] == weeks, fid
            assert f["titles"] == ["week starting", "cards"], fid
            assert f["series"] == f["legends"] == (3 if fid != "burden" else 2), fid
            drawn = (
                sum(
                    1
                    for r in f["rows"]
                    for cell in r[1 : 4 if fid != "burden" else 8]
                    if cell != ""
                )
                if fid != "burden"
                else None
            )
            if fid != "burden":
                assert f["dots"] == 3 * len(weeks) == drawn, fid
            else:
                points = sum(1 for r in f["rows"] for cell in r[6:8] if cell != "")
                assert f["dots"] == points, fid
    outcomes = figures["outcomes"]
    assert outcomes["titles"] == ["topic", "cards"]
    assert outcomes["series"] == outcomes["legends"] == 3
    assert outcomes["xlabels"] == [r[1] for r in outcomes["rows"]]  # topic displays
    assert outcomes["rects"] == 3 * len(outcomes["rows"])
    rates = figures["rates"]
    assert rates["series"] == 2 and rates["titles"] == ["topic", "% of answered cards"]
    assert rates["rects"] == 2 * len(rates["rows"])
    assert rates["ylabels"][0] == "0 %" and rates["ylabels"][-1] == "100 %"
    for fid in ("by-service", "by-indicator", "by-profile", "by-issuer"):
        f = figures[fid]
        assert f["series"] == 3 and f["rects"] == 3 * len(f["rows"]), fid
    for fid in ("reasons", "taken", "suppressed"):
        f = figures[fid]
        assert f["series"] == 1 and f["rects"] == len(f["ylabels"]) >= 1, fid


def check_tables(figures: dict[str, dict[str, Any]], counts: dict[str, Any], seeded: Any) -> None:
    rows = {r[0]: r for r in figures["outcomes"]["rows"]}
    assert set(rows) == set(counts["issued"])
    for topic, row in rows.items():
        issued, accepted, overridden, none = (int(x) for x in row[2:6])
        assert issued == counts["issued"][topic]
        assert accepted == counts["outcome"].get((topic, "accepted"), 0)
        assert overridden == counts["outcome"].get((topic, "overridden"), 0)
        assert none == issued - counts["answered"].get(topic, 0)
    # every trend table adds up to the topic's total
    for topic in rows:
        trend = figures[f"trend-{topic}"]["rows"]
        assert sum(int(r[1]) for r in trend) == counts["issued"][topic]
    profile = {r[0]: int(r[1]) for r in figures["by-profile"]["rows"]}
    # hospital B (Epic) sends young-adult-back-spasm-30d once a week for four weeks and gets
    # one card each time: its decision card (the alternatives are a line of it, review N8)
    assert profile == counts["by_profile"] == {"standard": profile["standard"], "epic": 4}
    issuer = {r[0]: int(r[1]) for r in figures["by-issuer"]["rows"]}
    assert issuer == counts["by_issuer"]
    assert sum(int(r[-1]) for r in figures["suppressed"]["rows"]) == counts["suppressed"] >= 1
    burden = figures["burden"]["rows"]
    assert {r[0]: int(r[2]) for r in burden} == seeded.sign_calls
    assert sum(int(r[2]) for r in burden) == counts["sign_calls"]
    taken = sum(int(r[-1]) for r in figures["taken"]["rows"])
    assert taken == sum(n for (_, o), n in counts["outcome"].items() if o == "accepted")


def test_dashboard_and_gallery_in_chromium(tmp_path: Path) -> None:
    require_browser()
    a = write_key(tmp_path, "a", ec.generate_private_key(ec.SECP384R1()))
    b = write_key(tmp_path, "b", rsa.generate_private_key(65537, 2048))
    app = build_app(tmp_path, write_issuers_in(tmp_path), a, b)
    seeded = seed(app, a, b)
    engine = app.extensions["cds.store"].engine
    counts = store_counts(engine)
    img = DOCS_IMG if os.environ.get("CDS_SCREENSHOTS") == "docs" else tmp_path / "img"
    img.mkdir(parents=True, exist_ok=True)

    report = tmp_path / "report.html"
    database = app.config["CDS_SETTINGS"].resolved_database_url()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CDS_DATABASE_URL", database)
        mp.setenv("CDS_PATIENT_HASH_KEY", "dashboard-test-key")
        assert main(["report", "--html", str(report)]) == 0

    with serving(app) as base, browser() as chromium:
        context = chromium.new_context(viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        # unauthenticated: 401; then the login form sets the session cookie
        assert page.goto(f"{base}/admin/dashboard").status == 401
        page.goto(f"{base}/admin/login")
        page.fill("#token", ADMIN_TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/admin/dashboard")
        cookie = next(c for c in context.cookies() if c["name"] == "cds_admin")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        served = read_figures(page)
        check_charts(served, seeded.weeks)
        check_tables(served, counts, seeded)
        assert len([f for f in served if f.startswith("trend-")]) == len(counts["issued"])
        page.screenshot(
            path=str(img / "dashboard.png"),
            clip={"x": 0, "y": 0, "width": 1400, "height": 1900},
            full_page=True,
        )

        # an export link serves the table the page shows
        csv_href = served["outcomes"]["exports"][0]
        exported = context.request.get(base + csv_href)
        assert exported.ok and exported.headers["content-type"].startswith("text/csv")
        lines = exported.text().strip().splitlines()
        assert len(lines) == 1 + len(served["outcomes"]["rows"])

        gallery = context.new_page()
        gallery.goto(f"{base}/admin/cards")
        scenarios = gallery.locator("section.scenario[data-scenario]")
        assert scenarios.count() == 2 * len(list((REPO / "fixtures" / "scenarios").glob("*.json")))
        assert gallery.locator("article.card.warning .badge").first.is_visible()
        compare = gallery.locator("section.scenario[data-compare]")
        assert compare.count() == 2
        assert compare.first.locator(".before article.card").count() >= 1
        assert compare.first.locator(".after article.card").count() >= 1
        assert gallery.locator("script").count() == 0
        gallery.locator("#before-after").scroll_into_view_if_needed()
        top = gallery.locator("#before-after").bounding_box()
        gallery.screenshot(
            path=str(img / "cards.png"),
            full_page=True,
            clip={"x": 0, "y": top["y"] - 10, "width": 1400, "height": 1500},
        )
        context.close()

        # the report file, opened offline, shows the same figures
        offline = chromium.new_context(offline=True, viewport={"width": 1400, "height": 1000})
        file_page = offline.new_page()
        file_page.goto(report.as_uri())
        from_file = read_figures(file_page)
        assert set(from_file) == set(served)
        for fid, f in from_file.items():
            assert f["svgs"] == 1 and f["rows"] == served[fid]["rows"], fid
            assert f["series"] == served[fid]["series"] and f["dots"] == served[fid]["dots"]
            assert all(h.startswith("data:") for h in f["exports"]), fid
        check_charts(from_file, seeded.weeks)
        offline.close()
    assert len(seeded.weeks) == WEEKS
