"""Card words (issue 19 item 5; knowledge F.2a "Words"), over every shipped fixture in both
EHR profiles, through the HTTP API exactly as an EHR would call it.

What is checked, on every card's ``summary`` and ``detail`` (the whole detail, engine notes
included):

- **ISMP error-prone abbreviations and symbols** (ISMP List of Error-Prone Abbreviations,
  Symbols, and Dose Designations): each pattern in ``ISMP`` is named after what it catches;
  write "for 7 days", "3 times a day", "or fewer", "below", "above", "2 to 4 mg" instead.
- **No FHIR or software jargon** (``JARGON``): a prescriber reads "pended order" and "days
  supply", never "draft", "resource" or "expectedSupplyDuration".
- **Summary under 140 characters** (CDS Hooks).
- **Detail length.** ``counted_words`` measures what the card template says to the clinician:

  1. the detail is split into paragraphs at blank lines;
  2. leading paragraphs that restate the suggestions for a profile without one-click edits
     (Epic: "**To switch: …**", "**To change the pended order, edit it:** …") are not counted:
     the engine builds them from the suggestion labels, whose length the order-label rules
     cap, and they are the action itself;
  3. counting stops at the first paragraph that starts with "Source:" or "Sources:" (the
     template's source line, which every variant must have); that line and every paragraph
     after it (the engine's notes: "The choices for this order …", "Not known when this
     advice was made …", "Also: …", "Also noted: …") are not counted;
  4. a word is a whitespace-separated token holding at least one letter or digit, so
     Markdown markers and list dashes are not words and "1." is.

  Two caps. F.2a asks for "at most about 50 words", what a prescriber reads in about ten
  seconds. (a) What a template author controls, the fixed prose of every variant with its
  ``{placeholders}`` removed, is capped at ``PROSE_CAP`` = 45, leaving room for the filled
  values. (b) The rendered text is capped at ``WORD_CAP`` = 60: it includes patient-specific
  lists that grow with the patient (the ranked alternatives, each with its cautions, and each
  one not offered with its reason). A cap of 50 there would force dropping a patient's
  exclusion reason or caution, which are the safety content; 60 is "about 50" plus one such
  line, and only the alternatives card of an older adult with exclusions or cautions goes
  above 50 (the typical older-adult card stays at or below 50, the median card near 35).
  The median and maximum, counted, with the Epic action lines, and for the whole detail, are
  printed in the pytest terminal summary (``summary_line`` user properties, collected by
  ``tests/conftest.py``).
- **The action first.** The counted text opens with an imperative verb from
  ``ACTION_VERBS`` (F.2a: "opens with the action").
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from cds_service.app import create_app
from cds_service.config import REPO_DIR
from tests.scenario_cards import fixture_paths, load

PROFILES = ("standard", "epic")
CARDS = REPO_DIR / "cards"
PATHS = fixture_paths()
WORD_CAP = 60
PROSE_CAP = 45
TYPICAL = "f13-typical-68-spasm-at-most-3-cards"  # a typical older-adult acute-spasm order
SUMMARY_LIMIT = 140

# (name, pattern): each catches one kind of notation on the ISMP list of error-prone
# abbreviations, symbols and dose designations
_ISMP_PATTERNS = (
    ("'x' for times or duration (x7d, x3/day, 2x/day, ×3)",
     r"(?i)(?<![a-z])[x×]\s?\d|\d\s?[x×](?![a-z])"),
    ("slash for 'per' (/day, mg/d, 3/day)",
     r"\d\s*/\s*(?:day|d|h|hr|wk|week|dose)\b|\b(?:mg|mL|tablets?)/(?:day|d|dose|h|kg)\b"),
    ("'<' '>' '≤' '≥' for below/above", r"[<>≤≥]"),
    ("'+' for 'and'", r"\+"),
    ("'@' or '&' for 'at'/'and'", r"[@&]"),
    ("arrow symbols", r"[→←↑↓]"),
    ("'q' intervals (q6h, q6-8h, qd, qod, qhs, q.d.)",
     r"(?i)\bq\.?\s?\d|\bq\.?(?:d|o\.?d|hs|h|am|pm|wk|day)\b"),
    ("Latin frequencies (tid, bid, qid, hs, prn, tiw)",
     r"(?i)\b(?:t\.?i\.?d|b\.?i\.?d|q\.?i\.?d|h\.?s|p\.?r\.?n|tiw|biw)\b"),
    ("'U' or 'IU' for units", r"\b(?:U|IU|u)\b"),
    ("trailing zero (5.0 mg)", r"\b\d+\.0+\b"),
    ("naked decimal point (.5 mg)", r"(?<![\w.])\.\d"),
    ("'cc', 'µg', 'ug'", r"\b\d+\s?(?:cc|ug|µg|μg)\b|\bcc\b"),
    ("numeric range with a dash (2-4 mg, 2–2.5 mg: write 'to')",
     r"(?<![\d\-–])\d+(?:\.\d+)?\s?[\-–—]\s?\d+(?:\.\d+)?(?![\d\-–])"),
    ("route and eye/ear abbreviations (SC, SQ, IN, IJ, AD, AS, AU, OD, OS, OU)",
     r"\b(?:SC|SQ|IN|IJ|AD|AS|AU|OD|OS|OU)\b|(?i:\bsub\s?q\b)"),
    ("'D/C' for discharge or discontinue", r"(?i)\bd/c\b"),
    ("abbreviated drug names (APAP, ASA, MS, MSO4, MgSO4, HCTZ, MTX)",
     r"\b(?:APAP|ASA|MS|MSO4|MgSO4|HCTZ|MTX|AZT|CPZ|PTU|HCT)\b"),
    ("'BT' for bedtime", r"\bBT\b"),
)  # fmt: skip
ISMP: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in _ISMP_PATTERNS
)

JARGON = re.compile(
    r"(?i)\b(?:expectedSupplyDuration|dispenseRequest|dosageInstruction|MedicationRequest|"
    r"MedicationStatement|reasonCode|reasonReference|selectionBehavior|isRecommended|"
    r"drafts?|resources?|FHIR|prefetch|hooks?|order-select|order-sign|RxCUI|RxNorm|LOINC|"
    r"SNOMED|UCUM|JSON|null)\b"
)

ACTION_VERBS = frozenset(
    {
        "add", "ask", "avoid", "cancel", "change", "check", "choose", "confirm", "consider",
        "correct", "decide", "document", "give", "keep", "limit", "lower", "monitor", "offer",
        "plan", "prefer", "reassess", "reduce", "replace", "review", "start", "stop", "switch",
        "taper", "treat", "use", "weigh",
    }
)  # fmt: skip

_ACTION_PREFIXES = ("**To switch:", "**To change the pended order, edit it:**")
_SOURCE_LINE = re.compile(r"^\**Sources?:")


def paragraphs(detail: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", detail) if p.strip()]


def counted_text(detail: str) -> str | None:
    """The template's own words: after the profile's action lines, before the source line.
    None when the detail has no source line."""
    kept: list[str] = []
    leading = True
    for para in paragraphs(detail):
        if leading and para.startswith(_ACTION_PREFIXES):
            continue
        leading = False
        if _SOURCE_LINE.match(para):
            return "\n\n".join(kept)
        kept.append(para)
    return None


def words(text: str) -> int:
    return sum(1 for token in text.split() if re.search(r"[A-Za-z0-9]", token))


def counted_words(detail: str) -> int:
    return words(counted_text(detail) or "")


def shown_words(detail: str) -> int:
    """Everything before the source line, the Epic action lines included (reported only)."""
    before: list[str] = []
    for para in paragraphs(detail):
        if _SOURCE_LINE.match(para):
            break
        before.append(para)
    return words("\n\n".join(before))


def ismp_problems(text: str) -> list[str]:
    return [f"{name}: {m.group(0)!r}" for name, rx in ISMP for m in rx.finditer(text)]


# --- the responses --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[Any]]:
    """Every fixture through one app per profile (built as in tests/test_scenarios.py)."""
    base = tmp_path_factory.mktemp("card-words")
    out: dict[tuple[str, str], list[Any]] = {}
    for profile in PROFILES:
        app: Flask = create_app(
            {"auth": "disabled", "data_dir": str(base / profile), "ehr_profile": profile}
        )
        client = app.test_client()
        for path in PATHS:
            fixture = load(path)
            response = client.post(f"/cds-services/{fixture['service']}", json=fixture["request"])
            assert response.status_code == 200, (path.stem, response.get_data(as_text=True)[:300])
            out[(profile, path.stem)] = response.get_json()["cards"]
    return out


def _cards(answers: dict[tuple[str, str], list[Any]], profile: str, path: Path) -> list[Any]:
    return answers[(profile, path.stem)]


def _topic(card: dict[str, Any]) -> str:
    return str(card["source"]["topic"]["code"])


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_card_words(path: Path, profile: str, answers: dict[tuple[str, str], list[Any]]) -> None:
    problems = []
    for card in _cards(answers, profile, path):
        topic, summary, detail = _topic(card), card["summary"], card["detail"]
        for where, text in (("summary", summary), ("detail", detail)):
            problems += [f"{topic} {where}: ISMP {p}" for p in ismp_problems(text)]
            problems += [f"{topic} {where}: jargon {m.group(0)!r}" for m in JARGON.finditer(text)]
        if re.search(r"(?<![\w?])\?(?![\w?])", summary + "\n" + detail):
            problems.append(f"{topic}: a '?' (an unfilled placeholder or unknown number)")
        if re.search(r"(?i)not offered:\s*-?\s*none", detail):
            problems.append(f"{topic} detail: prints an empty 'Not offered' list")
        if len(summary) >= SUMMARY_LIMIT:
            problems.append(f"{topic} summary: {len(summary)} characters")
        body = counted_text(detail)
        if body is None:
            problems.append(f"{topic} detail: no 'Source:' line")
            continue
        if words(body) > WORD_CAP:
            problems.append(f"{topic} detail: {words(body)} words > {WORD_CAP}: {body[:80]!r}…")
        first = re.sub(r"[^a-z]", "", body.split()[0].lower()) if body.split() else ""
        if first not in ACTION_VERBS:
            problems.append(f"{topic} detail opens with {first!r}, not an action: {body[:60]!r}")
    assert not problems, "\n".join(problems)


def test_detail_word_counts_are_reported(
    answers: dict[tuple[str, str], list[Any]], record_property: Any
) -> None:
    """Median and maximum over every card of every fixture in both profiles."""
    details = [card["detail"] for cards in answers.values() for card in cards]
    assert details
    lines = []
    for name, measure in (
        ("counted (the cap applies)", counted_words),
        ("shown before the source line, Epic action lines included", shown_words),
        ("whole detail, engine notes included", words),
    ):
        counts = [measure(d) for d in details]
        lines.append(
            f"card detail words, {name}: median {statistics.median(counts):g}, "
            f"max {max(counts)} over {len(counts)} cards"
        )
    for line in lines:
        print(line)
        record_property("summary_line", line)
    assert max(counted_words(d) for d in details) <= WORD_CAP


def test_typical_older_adult_cards_are_about_50_words(
    answers: dict[tuple[str, str], list[Any]],
) -> None:
    for profile in PROFILES:
        for card in answers[(profile, TYPICAL)]:
            assert counted_words(card["detail"]) <= 50, (profile, _topic(card), card["detail"])


def test_template_prose_is_short() -> None:
    """What an author writes, placeholders removed, leaves room for the filled values."""
    long = []
    for path in sorted(CARDS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, variant in data.get("variants", {}).items():
            body = counted_text(re.sub(r"\{[a-z_]+\}", "", variant["detail"]))
            assert body is not None, (path.name, name, "no Source line")
            if words(body) > PROSE_CAP:
                long.append(f"{path.stem}/{name}: {words(body)} words")
            for where in ("summary", "detail"):
                assert not ismp_problems(variant[where]), (path.name, name, where)
                assert not JARGON.search(variant[where]), (path.name, name, where)
    assert not long, long


# --- the checks themselves ------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "diazepam 5 mg x7d",
        "3x/day",
        "2x/day",
        "≤7 days",
        "eGFR < 60",
        "over > 14",
        "opioid + benzodiazepine",
        "2 mg q6-8h",
        "5 mg tid",
        "1 tab bid",
        "10 U",
        "5.0 mg",
        ".5 mg",
        "raise by 2-4 mg",
        "2–2.5 mg",
        "take qhs",
    ],
)
def test_each_ismp_example_is_caught(text: str) -> None:
    assert ismp_problems(text), text


@pytest.mark.parametrize(
    "text",
    [
        "2 mg 3 times a day for 7 days, 21 tablets",
        "eGFR 45, below 60 at age 78",
        "7 days or fewer",
        "2 to 2.5 mg once or twice a day",
        "since 2025-06-01 (M62.830; ICD-10)",
        "clearance about 4-fold lower",
        "CrCl about 20 mL/min",
        "the next dose",
    ],
)
def test_safe_wording_passes(text: str) -> None:
    assert ismp_problems(text) == [], text


def test_word_count_definition() -> None:
    detail = (
        "**To switch: select both Remove diazepam and one alternative.**\n\n"
        "Use tizanidine instead:\n1. **tizanidine** (off-label)\n- none\n\n"
        "Sources: FDA labels.\n\nThe choices for this order are on the **duration** card."
    )
    assert counted_text(detail) == "Use tizanidine instead:\n1. **tizanidine** (off-label)\n- none"
    # Use, tizanidine, instead:, 1., **tizanidine**, (off-label), none ("-" is not a word)
    assert counted_words(detail) == 7
    assert shown_words(detail) == 7 + 9  # with the Epic action line
    assert counted_text("No source line here.") is None
