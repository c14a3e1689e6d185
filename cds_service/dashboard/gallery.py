"""The card gallery: every fixture scenario's answer, per EHR profile, drawn as an EHR shows a
card, so a pharmacist reviews the wording without an EHR.

Each scenario goes through the same pipeline a hook call does (``run_hook``: orders, patient
data from the fixture's prefetch, rules, cards, the output stage), dated today like the
scenario tests (``redate``), with ``fhirServer`` removed so nothing is ever fetched; nothing
is recorded in the store. Card detail is CommonMark rendered by markdown-it with raw HTML
off (an ``<b>`` in a card shows as text) and only http(s)/mailto links kept: card text can
never inject markup into the page.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from markupsafe import Markup

from cds_service.compat import normalize_body
from cds_service.config import PACKAGE_DIR, REPO_DIR, Settings
from cds_service.dashboard.page import render_template
from cds_service.discovery import SERVICES
from cds_service.hook_request import build_hook_request, validate
from cds_service.pipeline import run_hook
from cds_service.redate import redate

log = logging.getLogger("cds_service.gallery")

FIXTURES_DIR = REPO_DIR / "fixtures" / "scenarios"
BEFORE_FILE = PACKAGE_DIR / "data" / "gallery" / "before-issue-19.json"
BEFORE_FIXTURE = "elderly-78-egfr45-no-baclofen"
PROFILES = ("standard", "epic")
SAFE_SCHEMES = ("http://", "https://", "mailto:")


@cache
def _markdown() -> MarkdownIt:
    # "commonmark" with html off: raw HTML in card text is escaped, never passed through
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.validateLink = lambda url: url.strip().lower().startswith(SAFE_SCHEMES)  # type: ignore[method-assign]
    return md


def markdown_html(text: str) -> Markup:
    """Card detail (CommonMark) as HTML; markup in the text is escaped, not rendered."""
    return Markup(_markdown().render(text or ""))  # noqa: S704 - markdown-it escapes raw HTML


def safe_url(url: Any) -> str | None:
    """A link target worth making clickable; anything else is shown as text."""
    return url if isinstance(url, str) and url.strip().lower().startswith(SAFE_SCHEMES) else None


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    service: str
    profile: str
    cards: list[dict[str, Any]]
    error: str | None = None


def fixture_files(directory: Path = FIXTURES_DIR) -> list[Path]:
    return sorted(directory.glob("*.json")) if directory.is_dir() else []


def answer(
    request: dict[str, Any], service_id: str, advisor: Any, settings: Settings, profile: str
) -> list[dict[str, Any]]:
    """The cards the service answers for ``request`` in ``profile``, as the client sees them."""
    body, _ = normalize_body({k: v for k, v in request.items() if k != "fhirServer"})
    service = SERVICES[service_id]
    validate(service.hook, body)
    result = run_hook(
        build_hook_request(body), advisor=advisor, settings=settings, profile=profile, timings={}
    )
    return [{k: v for k, v in c.items() if not k.startswith("_")} for c in result["cards"]]


def run_scenarios(
    advisor: Any,
    settings: Settings,
    directory: Path = FIXTURES_DIR,
    profiles: tuple[str, ...] = PROFILES,
) -> list[Scenario]:
    out = []
    for path in fixture_files(directory):
        try:
            fixture = json.loads(path.read_text(encoding="utf-8"))
            request = redate(fixture["request"])
        except (OSError, ValueError, KeyError) as exc:
            out.append(Scenario(path.stem, "", "", "", [], f"unreadable: {type(exc).__name__}"))
            continue
        for profile in profiles:
            try:
                cards = answer(request, fixture["service"], advisor, settings, profile)
                error = None
            except Exception as exc:  # one broken scenario must not hide the others
                log.warning("gallery scenario failed", extra={"scenario": path.stem})
                cards, error = [], f"{type(exc).__name__}: {str(exc)[:200]}"
            out.append(
                Scenario(
                    fixture.get("name") or path.stem,
                    fixture.get("description") or "",
                    fixture["service"],
                    profile,
                    cards,
                    error,
                )
            )
    return out


def before_after(
    advisor: Any, settings: Settings, directory: Path = FIXTURES_DIR
) -> dict[str, Any] | None:
    """The typical older-adult order before the card redesign (issue 19; answers captured at
    the commit in the data file) and now, per profile."""
    path = directory / f"{BEFORE_FIXTURE}.json"
    if not BEFORE_FILE.is_file() or not path.is_file():
        return None
    before = json.loads(BEFORE_FILE.read_text(encoding="utf-8"))
    fixture = json.loads(path.read_text(encoding="utf-8"))
    request = redate(fixture["request"])
    return {
        "fixture": BEFORE_FIXTURE,
        "description": fixture.get("description") or "",
        "commit": before["commit"],
        "what": before["what"],
        "profiles": [
            {
                "profile": profile,
                "before": before["answers"][profile]["cards"],
                "after": answer(request, fixture["service"], advisor, settings, profile),
            }
            for profile in PROFILES
            if profile in before["answers"]
        ],
    }


def _resource_lines(resource: Any) -> list[str]:
    """An order spelled out: drug, each dosage line, quantity, duration, refills."""
    if not isinstance(resource, dict):
        return []
    lines = []
    medication = (
        resource.get("medicationCodeableConcept")
        or (
            (resource.get("medication") or {}).get("concept")
            if isinstance(resource.get("medication"), dict)
            else None
        )
        or {}
    )
    codings = medication.get("coding") or [] if isinstance(medication, dict) else []
    drug = medication.get("text") if isinstance(medication, dict) else None
    if not drug and codings:
        drug = codings[0].get("display")
    code = next((c.get("code") for c in codings if isinstance(c, dict)), None)
    lines.append(
        f"{resource.get('resourceType', 'resource')}: {drug or 'medication not named'}"
        + (f" (RxNorm {code})" if code else "")
    )
    for dosage in resource.get("dosageInstruction") or []:
        if isinstance(dosage, dict) and dosage.get("text"):
            lines.append(f"Dose: {dosage['text']}")
    dispense = resource.get("dispenseRequest") or {}
    if isinstance(dispense, dict):
        qty = dispense.get("quantity") or {}
        days = dispense.get("expectedSupplyDuration") or {}
        parts = []
        if isinstance(qty, dict) and qty.get("value") is not None:
            parts.append(f"{qty.get('value')} {qty.get('unit') or ''}".strip())
        if isinstance(days, dict) and days.get("value") is not None:
            parts.append(f"{days.get('value')} {days.get('unit') or 'days'}")
        if dispense.get("numberOfRepeatsAllowed") is not None:
            parts.append(f"refills: {dispense['numberOfRepeatsAllowed']}")
        if parts:
            lines.append("Dispense: " + ", ".join(parts))
    return lines


def card_view(card: dict[str, Any]) -> dict[str, Any]:
    """What the template draws for one card (strings escaped by the template)."""
    source = card.get("source") or {}
    topic = source.get("topic") or {}
    suggestions = []
    for s in card.get("suggestions") or []:
        actions = []
        for a in s.get("actions") or []:
            actions.append(
                {
                    "type": a.get("type"),
                    "description": a.get("description"),
                    "resource_id": a.get("resourceId"),
                    "lines": _resource_lines(a.get("resource")),
                }
            )
        suggestions.append(
            {
                "label": s.get("label"),
                "recommended": bool(s.get("isRecommended")),
                "actions": actions,
            }
        )
    return {
        "summary": card.get("summary"),
        "indicator": card.get("indicator")
        if card.get("indicator") in ("info", "warning", "critical")
        else "info",
        "detail": markdown_html(card.get("detail") or ""),
        "source_label": source.get("label"),
        "source_url": safe_url(source.get("url")),
        "topic_code": topic.get("code") if isinstance(topic, dict) else None,
        "topic_display": topic.get("display") if isinstance(topic, dict) else None,
        "links": [
            {"label": link.get("label"), "url": safe_url(link.get("url"))}
            for link in card.get("links") or []
            if isinstance(link, dict)
        ],
        "selection": card.get("selectionBehavior"),
        "suggestions": suggestions,
        "override_reasons": [
            {"code": r.get("code"), "display": r.get("display")}
            for r in card.get("overrideReasons") or []
            if isinstance(r, dict)
        ],
    }


def render_gallery(
    scenarios: list[Scenario],
    comparison: dict[str, Any] | None,
    *,
    standalone: bool = False,
    profile: str | None = None,
) -> str:
    shown = [s for s in scenarios if profile is None or s.profile == profile]
    views = [{"scenario": s, "cards": [card_view(c) for c in s.cards]} for s in shown]
    if comparison:
        comparison = {
            **comparison,
            "profiles": [
                {
                    **p,
                    "before": [card_view(c) for c in p["before"]],
                    "after": [card_view(c) for c in p["after"]],
                }
                for p in comparison["profiles"]
            ],
        }
    names = sorted({s.name for s in shown})
    return render_template(
        "gallery.html",
        views=views,
        comparison=comparison,
        standalone=standalone,
        scenario_count=len(names),
        profiles=sorted({s.profile for s in shown}),
        card_count=sum(len(v["cards"]) for v in views),
    )
