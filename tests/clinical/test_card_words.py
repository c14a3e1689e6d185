"""Card words (issue 19; knowledge F.2a "Words", "No actionless noise"; F.0-7), over every
shipped fixture in both EHR profiles, through the HTTP API exactly as an EHR would call it.

What is checked, on every card's ``summary`` and **whole** ``detail``:

- **ISMP error-prone abbreviations and symbols** (ISMP List of Error-Prone Abbreviations,
  Symbols, and Dose Designations): each pattern in ``ISMP`` is named after what it catches;
  write "for 7 days", "3 times a day", "or fewer", "below", "above", "2 to 4 mg" instead.
- **No FHIR or software jargon** (``JARGON``): a prescriber reads "pended order" and "days
  supply", never "draft", "resource" or "expectedSupplyDuration".
- **Summary under 140 characters** (CDS Hooks).
- **Evidence in links, not in the text.** No detail carries a "Source:" line; every card has
  links, every link is one of ``cards/links.json`` (no URL is made up), and a muscle
  relaxant's label is linked only by a card that names that drug (F.0-7).
- **Detail length** (F.2a "at most about 50 words"; pharmacist review: "about 50 words plus
  one line per drug"). A word is a whitespace-separated token holding a letter or digit ("1."
  and "5" are words; Markdown markers are not). The detail is split into paragraphs:

  - a **choice line** (``CHOICE``) opens with a bold head naming one order choice and states
    that order: a drug's typed order ("**Tizanidine 2 mg tablets:** ...", "**Naloxone 4 mg
    nasal spray:** ..."), a diazepam step ("**Diazepam oral solution 1 mg/mL ...:** ..."), a
    drug's titration plan ("**Tizanidine:** start 2 mg ...") or an Epic edit of the order
    ("**Edit the order ...:**", "**Or edit the order:**", "**Or the tablet step:**", "**To keep
    one instead ...:**"). Each is capped on its own at ``TYPED_CAP`` = 40 words and holds ONE
    choice: at most one drug named beside diazepam, no second choice joined by "; or".
  - everything else is the **reading text**, "To switch: select both Remove diazepam and one
    alternative." included: at most ``WORD_CAP`` = 60 words on every card, in both profiles,
    the card that decides included (F.2a's about 50 words, plus a caution line).

  The median and maximum of the whole detail and of the reading text, over every card and per
  profile and kind, are printed in the pytest terminal summary (``summary_line`` user
  properties, collected by ``tests/conftest.py``); the median of the whole detail must stay at
  most ``MEDIAN_CAP`` = 40. A failing card is named: fixture, profile, topic, word count and its
  opening words.
- **The action first.** The detail opens with the action: an Epic action line ("To switch",
  "Edit the order") or an imperative verb from ``ACTION_VERBS``.
- **No older-adult words for a younger patient** (N12): no card for a patient under 65 says
  "older adult", "65 and older", "from age 65" and the like, or links AGS Beers.
- **No actionless noise** (N8): an info card of a foldable topic with nothing to do is not
  shown beside a card that decides for the order; it is a sentence of that card.
- **The right source** (N11): the CDC opioid guideline is cited only beside an opioid.
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
AGES = {path.stem: load(path)["patient_age"] for path in PATHS}
WORD_CAP = 60
MEDIAN_CAP = 40
PROSE_CAP = 45
TYPICAL = "f13-typical-68-spasm-at-most-3-cards"  # a typical older-adult acute-spasm order
SUMMARY_LIMIT = 140
LINKS = json.loads((CARDS / "links.json").read_text(encoding="utf-8"))
BEERS_URL = LINKS["beers_2023"]["url"]
RELAXANTS = ("baclofen", "tizanidine", "cyclobenzaprine", "methocarbamol")
CDC_URL = LINKS["cdc_rec11"]["url"]

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

# N12: what may be said only to a patient who is (or may be) 65 or older
OLDER_WORDS = re.compile(
    r"(?i)older[- ]adults?|65 and older|at 65\b|from age 65|aged 65|over 65|\b65\+|"
    r"older or debilitated|older patients"
)

ACTION_VERBS = frozenset(
    {
        "add", "ask", "avoid", "cancel", "change", "check", "choose", "confirm", "consider",
        "correct", "decide", "document", "extend", "give", "keep", "limit", "lower", "monitor",
        "offer", "plan", "prefer", "reassess", "reduce", "remove", "replace", "review", "start",
        "stop", "switch", "taper", "treat", "use", "weigh",
    }
)  # fmt: skip

# Epic's action lines (F.2a): the choices written as what to select and what to edit
EPIC_ACTION_LINES = (
    "**To switch:",
    "**Edit the order",  # "Edit the order:", "Edit the order to the first taper step:"
    "**Or edit the order:**",
    "**To keep one instead",
    "**New order",  # another product is a new order, not an edit (review round 5 M-1)
    "**Keep only:**",  # a long-term user keeps one of several orders (review round 6 H-1)
)
_SOURCE_LINE = re.compile(r"(?m)^\**Sources?:")
FOLDABLE = (
    "muscle-relaxant-alternative",
    "no-suitable-alternative",
    "dose-limit",
    "duration-limit",
)


def paragraphs(detail: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", detail) if p.strip()]


def words(text: str) -> int:
    return sum(1 for token in text.split() if re.search(r"[A-Za-z0-9]", token))


def ismp_problems(text: str) -> list[str]:
    return [f"{name}: {m.group(0)!r}" for name, rx in ISMP for m in rx.finditer(text)]


def decides(card: dict[str, Any]) -> bool:
    """The card holds the choices on its pended order: an action on it (remove, rewrite,
    replace, or an alternative added beside it), or in Epic its edits in words."""
    for suggestion in card.get("suggestions") or []:
        for action in suggestion["actions"]:
            if action["type"] in ("delete", "update"):
                return True
            text = json.dumps(action.get("resource") or {}).lower()
            if any(d in text for d in ("baclofen", "tizanidine", "cyclobenzaprine", "methoc")):
                return True
    return any(p.startswith(EPIC_ACTION_LINES) for p in paragraphs(card["detail"]))


# A choice line: a bold head naming one order choice (a drug, a diazepam step, an edit of the
# order), then that order with a dose, volume, duration or count. Like a suggestion's label, it
# is capped on its own; the rest of the detail is the reading text.
CHOICE = re.compile(
    r"^\*\*(?:Or )?(?:(?:Baclofen|Tizanidine|Cyclobenzaprine|Methocarbamol|Naloxone|Diazepam)\b"
    r"|(?:[Ee]dit the order|(?:the )?[Tt]ablet step|To keep one instead|[Kk]eep only"
    r"|[Nn]ew order)\b)"
    r"[^*]*:\*\* .*\b\d+(?:\.\d+)? (?:mg|mL|days?|tablets?|twin pack)\b",
    re.S,
)
TYPED_CAP = 40
_DRUGS = re.compile(r"(?i)\b(?:baclofen|tizanidine|cyclobenzaprine|methocarbamol|naloxone)\b")


def choice_lines(card: dict[str, Any]) -> list[str]:
    """The choice lines of a card's detail (both profiles)."""
    return [p for p in paragraphs(card["detail"]) if CHOICE.match(p)]


def choices_in(line: str) -> int:
    """How many choices a choice line holds: the drugs it names (diazepam aside, at least
    one: an edit of the diazepam order), plus one per further choice joined by "; or"."""
    drugs = len({m.group(0).lower() for m in _DRUGS.finditer(line)})
    return max(drugs, 1) + len(re.findall(r";\s+or\b", line))


def reading_words(card: dict[str, Any]) -> int:
    """The words of the detail a prescriber reads to decide: all but the choice lines."""
    choices = choice_lines(card)
    return sum(words(p) for p in paragraphs(card["detail"]) if p not in choices)


def opens_with_action(detail: str) -> bool:
    first = paragraphs(detail)[0] if paragraphs(detail) else ""
    if first.startswith(EPIC_ACTION_LINES):
        return True
    head = re.sub(r"[^a-z]", "", first.split()[0].lower()) if first.split() else ""
    return head in ACTION_VERBS


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


def _name(path: Path, profile: str, card: dict[str, Any]) -> str:
    return f"{path.stem} [{profile}] {_topic(card)}"


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_card_words(path: Path, profile: str, answers: dict[tuple[str, str], list[Any]]) -> None:
    problems = []
    known_urls = {link["url"] for link in LINKS.values()}
    for card in _cards(answers, profile, path):
        topic, summary, detail = _name(path, profile, card), card["summary"], card["detail"]
        for where, text in (("summary", summary), ("detail", detail)):
            problems += [f"{topic} {where}: ISMP {p}" for p in ismp_problems(text)]
            problems += [f"{topic} {where}: jargon {m.group(0)!r}" for m in JARGON.finditer(text)]
        if re.search(r"(?<![\w?])\?(?![\w?])", summary + "\n" + detail):
            problems.append(f"{topic}: a '?' (an unfilled placeholder or unknown number)")
        if re.search(r"(?i)not offered:\s*-?\s*none", detail):
            problems.append(f"{topic} detail: prints an empty 'Not offered' list")
        if len(summary) >= SUMMARY_LIMIT:
            problems.append(f"{topic} summary: {len(summary)} characters")
        if _SOURCE_LINE.search(detail):
            problems.append(f"{topic} detail: a 'Source:' line (sources are links)")
        if not card.get("links"):
            problems.append(f"{topic}: no links")
        strays = [link["url"] for link in card.get("links") or [] if link["url"] not in known_urls]
        if strays:
            problems.append(f"{topic}: links not in cards/links.json: {strays}")
        # F.0-7, N11: a muscle relaxant's label is cited only by a card that names the drug
        said = " ".join([summary, detail, *(s["label"] for s in card.get("suggestions") or [])])
        for link in card.get("links") or []:
            drug = link["label"].split()[0].lower()
            if drug in RELAXANTS and drug not in said.lower():
                problems.append(f"{topic}: cites the {drug} label but never names {drug}")
        count = reading_words(card)
        if count > WORD_CAP:
            problems.append(f"{topic} reading text: {count} words > {WORD_CAP}: {detail[:80]!r}…")
        for line in choice_lines(card):
            if words(line) > TYPED_CAP:
                problems.append(f"{topic} choice line: {words(line)} words: {line[:60]!r}")
            if choices_in(line) > 1:
                problems.append(f"{topic} choice line holds {choices_in(line)}: {line[:60]!r}")
        if not opens_with_action(detail):
            problems.append(f"{topic} detail does not open with an action: {detail[:60]!r}")
    assert not problems, "\n".join(problems)


def test_detail_word_counts_are_reported(
    answers: dict[tuple[str, str], list[Any]], record_property: Any
) -> None:
    """Median and maximum of the whole detail and of the reading text (without the choice
    lines) over every card of every fixture in both profiles, and per profile and kind (the
    card that decides, the cards that explain); and the longest choice line."""
    groups: dict[str, list[int]] = {"all": []}
    reading: dict[str, list[int]] = {"all": []}
    longest = (0, "")
    for (profile, _), cards in answers.items():
        for card in cards:
            kind = "decision cards" if decides(card) else "explaining cards"
            for key in ("all", profile, f"{profile}, {kind}"):
                groups.setdefault(key, []).append(words(card["detail"]))
                reading.setdefault(key, []).append(reading_words(card))
            for line in choice_lines(card):
                longest = max(longest, (words(line), line[:50]))
    assert groups["all"]
    lines = [
        f"card detail words ({what}), {name}: median {statistics.median(counts):g}, "
        f"max {max(counts)} over {len(counts)} cards"
        for what, group in (("whole detail", groups), ("reading text", reading))
        for name, counts in group.items()
    ]
    lines.append(f"longest choice line: {longest[0]} words ({longest[1]!r}...)")
    for line in lines:
        print(line)
        record_property("summary_line", line)
    assert statistics.median(groups["all"]) <= MEDIAN_CAP


def test_typical_older_adult_cards_are_about_50_words(
    answers: dict[tuple[str, str], list[Any]],
) -> None:
    """A typical older-adult acute-spasm order: every card within WORD_CAP, in both profiles
    (its decision card too)."""
    for profile in PROFILES:
        for card in answers[(profile, TYPICAL)]:
            assert reading_words(card) <= WORD_CAP, (profile, _topic(card), card["detail"])


@pytest.mark.parametrize("path", [p for p in PATHS if (AGES[p.stem] or 99) < 65], ids=str)
def test_no_older_adult_words_under_65(
    path: Path, answers: dict[tuple[str, str], list[Any]]
) -> None:
    """N12: older-adult wording (a spasticity plan's "older adults seldom ...", "AGS Beers:
    avoid at 65 and older") never reaches a patient known to be younger than 65."""
    problems = []
    for profile in PROFILES:
        for card in answers[(profile, path.stem)]:
            texts = [card["summary"], card["detail"]]
            texts += [s["label"] for s in card.get("suggestions") or []]
            texts += [link["label"] for link in card.get("links") or []]
            for text in texts:
                problems += [
                    f"{_name(path, profile, card)}: {m.group(0)!r}"
                    for m in OLDER_WORDS.finditer(text)
                ]
            if any(link["url"] == BEERS_URL for link in card.get("links") or []):
                problems.append(f"{_name(path, profile, card)}: links AGS Beers")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("profile", PROFILES)
def test_no_actionless_info_card_beside_a_decision(
    profile: str, answers: dict[tuple[str, str], list[Any]]
) -> None:
    """N8: beside the card that decides for a single pended order, an info card of a
    foldable topic with nothing to do ("X suggested instead", the anxiety note, a duration
    whose rewrite is a choice there) is a sentence of that card, not a card of its own."""
    problems = []
    for path in PATHS:
        fixture = load(path)
        drafts = fixture["request"]["context"]["draftOrders"].get("entry") or []
        if sum("diazepam" in json.dumps(e).lower() for e in drafts) != 1:
            continue  # several pended orders: each may have its own cards
        cards = answers[(profile, path.stem)]
        if not any(decides(c) for c in cards):
            continue
        problems += [
            _name(path, profile, card)
            for card in cards
            if card["indicator"] == "info"
            and _topic(card) in FOLDABLE
            and not card.get("suggestions")
            and not decides(card)
        ]
    assert not problems, problems


@pytest.mark.parametrize("profile", PROFILES)
def test_cdc_opioid_guideline_only_beside_an_opioid(
    profile: str, answers: dict[tuple[str, str], list[Any]]
) -> None:
    """N11: the taper card cites ASAM 2025 and the label; the CDC opioid guideline only when
    the response is about an opioid too (F.0-7: a card cites what supports its claim)."""
    problems = []
    for path in PATHS:
        cards = answers[(profile, path.stem)]
        opioid = any(_topic(c) == "opioid-benzodiazepine" for c in cards)
        for card in cards:
            if not opioid and any(link["url"] == CDC_URL for link in card.get("links") or []):
                problems.append(_name(path, profile, card))
    assert not problems, problems


def test_template_prose_is_short() -> None:
    """What an author writes, placeholders removed, leaves room for the filled values; no
    template carries a "Source:" line, and every one is ISMP-safe and jargon-free."""
    long = []
    for path in sorted(CARDS.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        for name, variant in data.get("variants", {}).items():
            for key in ("detail", "detail_edited", "line"):
                if key not in variant:
                    continue
                body = re.sub(r"\{[a-z_]+\}", "", variant[key])
                assert not _SOURCE_LINE.search(body), (path.name, name, key)
                if words(body) > PROSE_CAP:
                    long.append(f"{path.stem}/{name}/{key}: {words(body)} words")
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


def test_word_count_and_kind_definitions() -> None:
    detail = (
        "**To switch: select both Remove diazepam and one alternative.**\n\n"
        "Use tizanidine instead:\n1. **tizanidine** (off-label)\n- none\n\n"
        "The choices for this order are on the **duration** card."
    )
    # To, switch:, select, both, Remove, diazepam, and, one, alternative. (9) + Use,
    # tizanidine, instead:, 1., **tizanidine**, (off-label), none (7; "-" is not a word) + 10
    assert words(detail) == 9 + 7 + 10
    assert opens_with_action(detail)
    assert decides({"detail": detail})  # Epic: the choice written as what to select
    assert not decides({"detail": "Avoid diazepam if you can."})
    assert not opens_with_action("From age 65, benzodiazepines raise the risk of falls.")
    naloxone = {"type": "create", "resource": {"medicationCodeableConcept": {"text": "naloxone"}}}
    assert not decides({"detail": "Offer naloxone.", "suggestions": [{"actions": [naloxone]}]})
    assert OLDER_WORDS.search("seldom more than 30 to 40 mg a day at 65 and older")
    assert OLDER_WORDS.search("(older adults seldom more than 30 to 40 mg a day)")
    assert not OLDER_WORDS.search("Age 45: cyclobenzaprine 5 mg for 7 days")


def test_choice_line_definition() -> None:
    """A choice line is a bold head naming one order choice, then that order; "To switch",
    cautions, "Also" and a drug's caution without an order are the reading text."""
    lines = {
        "**Tizanidine 2 mg tablets:** 2 mg by mouth 3 times a day for 7 days; 21 tablets, "
        "no refills.": 1,
        "**Naloxone 4 mg nasal spray:** 1 spray in one nostril; 1 twin pack (2 devices), "
        "no refills.": 1,
        "**Tizanidine:** start 2 mg up to 3 times a day; 36 mg a day maximum.": 1,
        "**Edit the order to the first taper step:** change to diazepam oral solution 1 "
        "mg/mL: 4.5 mg = 4.5 mL twice a day for 14 days, 126 mL, no refills.": 1,
        "**Or the tablet step:** change to diazepam 2 mg tablets: 4 mg (2 tablets) twice a day "
        "for 14 days (56 tablets), no refills.": 1,
        "**Or edit the order:** change to diazepam 2 mg tablets: 2 mg twice a day for 7 days "
        "(14 tablets), no refills.": 1,
        "**Or edit the order:** to 7 days, no refills: the dose as written (21 tablets).": 1,
        "**To keep one instead, remove the others and edit it:** keep diazepam 5 mg 3 times a "
        "day, change it to diazepam 2 mg tablets: 2 mg twice a day for 7 days (14 tablets), "
        "no refills.": 1,
        "**Edit the order:** First taper step: diazepam 4.5 mg twice a day for 14 days; or "
        "Tablet step: diazepam 4 mg twice a day for 14 days.": 2,
    }
    for line, choices in lines.items():
        card = {"detail": line}
        assert choice_lines(card) == [line], line
        assert choices_in(line) == choices, line
        assert reading_words(card) == 0
    for line in (
        "**To switch: select both Remove diazepam and one alternative.**",
        "**Caution with any muscle relaxant:** with oxycodone, an opioid (more sedation).",
        "**Methocarbamol:** may reduce the effect of pyridostigmine (label).",
        "**Also:** Dose above the older-adult start (2 to 2.5 mg once or twice a day).",
        "**Off-label for acute spasm:** tizanidine.",
    ):
        assert choice_lines({"detail": line}) == [], line
        assert reading_words({"detail": line}) == words(line)


def test_no_parentheses_close_twice(answers: dict[tuple[str, str], list[Any]]) -> None:
    """Review round 5 (Low): "(cirrhosis or chronic liver disease (hepatic impairment))", a
    condition's own title in parentheses inside the card's, reads badly; it is said with a
    comma. Over every fixture in both profiles, summaries and details."""
    nested = re.compile(r"\([^()]*\([^()]*\)\)")
    found = [
        f"{profile}/{name}: {hit.group(0)[:80]}"
        for (profile, name), cards in answers.items()
        for card in cards
        for hit in [nested.search(card["summary"] + "\n" + card.get("detail", ""))]
        if hit
    ]
    assert not found, found[:5]
