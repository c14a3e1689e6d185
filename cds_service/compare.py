"""Semantic comparison of a CDS Hooks response with a fixture's expected outcome.

Shared by the test suite (`tests/test_scenarios.py`) and `diazepam-cds replay`, so a scenario
passes or fails for the same reasons in CI and against a hospital's endpoint. It compares what
a clinician would act on (which topics fire, at what level, which alternative is recommended,
what duration the cap writes, which action types the suggestions carry) and checks every card
against the CDS Hooks 2.0 card rules. It never compares wording, uuids or ordering, so
rephrasing a card or reordering suggestions does not break a scenario.

The fixture format is documented in `fixtures/README.md` and `fixtures/scenario.schema.json`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
INDICATORS = ("info", "warning", "critical")
SELECTION_BEHAVIORS = ("at-most-one", "any")
ACTION_TYPES = ("create", "update", "delete")
LINK_TYPES = ("absolute", "smart")
SUMMARY_MAX = 140  # CDS Hooks 2.0: summary "<140 characters"
DURATION_TOPIC = "duration-limit"
# Cards whose created/updated orders rewrite the diazepam order itself (the epic profile has no
# update: it re-creates the capped order). A diazepam order, or one the comparer cannot name, on
# such a card is a rewrite, not an alternative; a named muscle relaxant there still counts as an
# offered alternative (F.2a puts every action on a diazepam order on one card, whatever its topic,
# and an excluded drug must be caught wherever it is offered: F.0-2).
REWRITE_TOPICS = frozenset({DURATION_TOPIC, "dose-limit", "indication-missing"})
DIAZEPAM = "3322"
# F.2a puts every rewrite of the pended order on one decision card, whatever its topic: a
# capped order is a diazepam rewrite on any card but the taper step (R13: never a cap) and a
# reason-only rewrite (same supply; see _pended_supplies)
NOT_A_CAP_TOPICS = frozenset({"taper-required", "indication-missing"})
NALOXONE = "7242"  # R2: the naloxone rescue order beside diazepam is not an alternative to it
NALOXONE_PRODUCTS = ("1725059", "1725064")
PROFILES = ("standard", "epic")

# RxNorm ingredient (IN) per product code, for the alternatives a suggestion may create
# (knowledge base D.2). Ingredient codes map to themselves.
INGREDIENT_OF: dict[str, str] = {
    **dict.fromkeys(NALOXONE_PRODUCTS, NALOXONE),
    **dict.fromkeys(("1292", "430902", "197391", "197392", "2679605"), "1292"),  # baclofen
    **dict.fromkeys(("57258", "313412", "313413", "485484", "485485", "485486"), "57258"),
    **dict.fromkeys(  # cyclobenzaprine
        ("21949", "828320", "828299", "828348", "828301", "828358", "828353", "828359", "828355"),
        "21949",
    ),
    **dict.fromkeys(("6845", "197943", "197944", "2611794"), "6845"),  # methocarbamol
    **dict.fromkeys(("59078", "197935", "351254", "2627781"), "59078"),  # metaxalone
    "2101": "2101",  # carisoprodol
    "3322": "3322",  # diazepam
}
# Fallback when the code is unknown: the ingredient named in the display/text.
INGREDIENT_BY_NAME: dict[str, str] = {
    "baclofen": "1292",
    "tizanidine": "57258",
    "cyclobenzaprine": "21949",
    "methocarbamol": "6845",
    "metaxalone": "59078",
    "carisoprodol": "2101",
    "diazepam": "3322",
    "valium": "3322",
}
INGREDIENT_NAMES = {code: name for name, code in INGREDIENT_BY_NAME.items() if name != "valium"}

_DAYS_PER_UNIT = {
    "d": 1.0,
    "day": 1.0,
    "days": 1.0,
    "wk": 7.0,
    "week": 7.0,
    "weeks": 7.0,
    "h": 1 / 24,
    "mo": 30.0,
}


@dataclass(frozen=True)
class Mismatch:
    """One difference, phrased so an integration engineer can read it in a terminal."""

    what: str
    expected: str
    got: str

    def __str__(self) -> str:
        return f"{self.what}: expected {self.expected}, got {self.got}"


@dataclass
class Observed:
    """The semantic content of a response: what the comparison looks at."""

    topics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    recommended: set[str] = field(default_factory=set)
    created: set[str] = field(default_factory=set)
    capped_days: set[float] = field(default_factory=set)

    def indicators(self, topic: str) -> list[str]:
        return [str(c.get("indicator")) for c in self.topics.get(topic, [])]

    def action_types(self, topic: str) -> set[str]:
        return {
            str(action.get("type"))
            for card in self.topics.get(topic, [])
            for action in _actions(card)
        }

    def short(self) -> str:
        """A one-line summary for the replay table."""
        parts = [
            f"{topic}:{'/'.join(sorted(set(self.indicators(topic))))}"
            for topic in sorted(self.topics)
        ]
        if self.recommended:
            parts.append("rec=" + ",".join(sorted(_short(i) for i in self.recommended)))
        if self.capped_days:
            parts.append("cap=" + ",".join(_num(d) for d in sorted(self.capped_days)))
        return " ".join(parts) or "(no cards)"


def iter_fixture_paths(paths: Iterable[Path | str]) -> Iterator[Path]:
    """Scenario files under the given files/directories (recursively), sorted, schemas skipped."""
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        candidates = sorted(path.rglob("*.json")) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.name.endswith(".schema.json") or candidate in seen:
                continue
            seen.add(candidate)
            yield candidate


# --- reading a response -----------------------------------------------------------------------


def _actions(card: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for suggestion in card.get("suggestions") or []:
        if isinstance(suggestion, dict):
            for action in suggestion.get("actions") or []:
                if isinstance(action, dict):
                    yield action


def topic_of(card: Mapping[str, Any]) -> str:
    source = card.get("source")
    topic = source.get("topic") if isinstance(source, dict) else None
    code = topic.get("code") if isinstance(topic, dict) else None
    return str(code) if code else "(no topic)"


def ingredient_of(resource: Mapping[str, Any]) -> str | None:
    """RxNorm ingredient of a MedicationRequest's medication (code first, then name)."""
    concept = resource.get("medicationCodeableConcept")
    ref = resource.get("medicationReference")
    if not isinstance(concept, dict) and isinstance(ref, dict):
        target = str(ref.get("reference", "")).lstrip("#")
        for contained in resource.get("contained") or []:
            if isinstance(contained, dict) and contained.get("id") == target:
                concept = contained.get("code")
    if not isinstance(concept, dict):
        return None
    texts = [str(concept.get("text") or "")]
    for coding in concept.get("coding") or []:
        if not isinstance(coding, dict):
            continue
        code = str(coding.get("code") or "")
        if coding.get("system") == RXNORM and code in INGREDIENT_OF:
            return INGREDIENT_OF[code]
        texts.append(str(coding.get("display") or ""))
    lowered = " ".join(texts).lower()
    for name, code in INGREDIENT_BY_NAME.items():
        if name in lowered:
            return code
    return None


def _supply_days(resource: Mapping[str, Any]) -> float | None:
    dispense = resource.get("dispenseRequest")
    duration = dispense.get("expectedSupplyDuration") if isinstance(dispense, dict) else None
    if not isinstance(duration, dict) or not isinstance(duration.get("value"), int | float):
        return None
    unit = str(duration.get("code") or duration.get("unit") or "d").lower()
    factor = _DAYS_PER_UNIT.get(unit)
    return None if factor is None else float(duration["value"]) * factor


def _pended_supplies(request: Mapping[str, Any]) -> set[float]:
    """Supplies (days) of the pended orders in the request, as written."""
    context = request.get("context") if isinstance(request, Mapping) else None
    drafts = context.get("draftOrders") if isinstance(context, Mapping) else None
    out: set[float] = set()
    for entry in (drafts or {}).get("entry") or [] if isinstance(drafts, Mapping) else []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if isinstance(resource, Mapping):
            days = _supply_days(resource)
            if days is not None:
                out.add(days)
    return out


def observe(cards: Iterable[Mapping[str, Any]]) -> Observed:
    observed = Observed()
    for card in cards:
        if not isinstance(card, dict):
            continue
        topic = topic_of(card)
        observed.topics.setdefault(topic, []).append(card)
        for suggestion in card.get("suggestions") or []:
            if not isinstance(suggestion, dict):
                continue
            for action in suggestion.get("actions") or []:
                if not isinstance(action, dict):
                    continue
                resource = action.get("resource")
                if not isinstance(resource, dict):
                    continue
                if resource.get("resourceType") != "MedicationRequest":
                    continue
                kind = action.get("type")
                named = ingredient_of(resource)
                if (
                    topic not in NOT_A_CAP_TOPICS
                    and kind in ("update", "create")
                    and named in (None, DIAZEPAM)
                ):
                    supply = _supply_days(resource)
                    observed.capped_days.add(supply if supply is not None else -1.0)
                if kind != "create":
                    continue
                if topic in REWRITE_TOPICS and named is None:
                    continue  # a rewrite card's order we cannot name: taken as the rewrite
                ingredient = named or "(unknown drug)"
                if ingredient == DIAZEPAM:
                    continue  # re-ordering diazepam is not an alternative
                if ingredient == NALOXONE:
                    continue  # overdose rescue beside the benzodiazepine, not a substitute
                observed.created.add(ingredient)
                if suggestion.get("isRecommended") is True:
                    observed.recommended.add(ingredient)
    return observed


# --- CDS Hooks 2.0 card rules ------------------------------------------------------------------


def _empties(value: Any, path: str) -> Iterator[str]:
    if value is None or value == "" or value == [] or value == {}:
        yield f"{path} is null or empty (CDS Hooks: omit fields without a value)"
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _empties(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _empties(item, f"{path}[{i}]")


def _text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != ""


def card_problems(card: Any, where: str = "card") -> list[str]:
    """Violations of the CDS Hooks 2.0 card rules (digest §5) in one card."""
    if not isinstance(card, dict):
        return [f"{where} is not a JSON object"]
    problems: list[str] = list(_empties(card, where))
    if not _text(card.get("uuid")):
        problems.append(f"{where}.uuid missing (feedback needs it)")
    summary = card.get("summary")
    if not _text(summary):
        problems.append(f"{where}.summary missing")
    elif len(summary) >= SUMMARY_MAX:
        problems.append(f"{where}.summary is {len(summary)} characters (must be < {SUMMARY_MAX})")
    if card.get("indicator") not in INDICATORS:
        problems.append(f"{where}.indicator {card.get('indicator')!r} not in {INDICATORS}")
    source = card.get("source")
    if not isinstance(source, dict) or not _text(source.get("label")):
        problems.append(f"{where}.source.label missing")
    elif "topic" in source:
        topic = source["topic"]
        if (
            not isinstance(topic, dict)
            or not _text(topic.get("code"))
            or not _text(topic.get("system"))
        ):
            problems.append(f"{where}.source.topic needs code and system")
    for key in card:
        if isinstance(key, str) and key.startswith("_"):
            problems.append(f"{where}.{key} is a private key and must not reach clients")
    suggestions = card.get("suggestions")
    if suggestions is not None:
        problems.extend(_suggestion_problems(card, suggestions, where))
    elif "selectionBehavior" in card:
        problems.append(f"{where}.selectionBehavior present without suggestions")
    for i, reason in enumerate(card.get("overrideReasons") or []):
        if not isinstance(reason, dict) or not all(
            _text(reason.get(k)) for k in ("code", "system", "display")
        ):
            problems.append(f"{where}.overrideReasons[{i}] needs code, system and display")
    for i, link in enumerate(card.get("links") or []):
        if not isinstance(link, dict) or not (_text(link.get("label")) and _text(link.get("url"))):
            problems.append(f"{where}.links[{i}] needs label and url")
            continue
        if link.get("type") not in LINK_TYPES:
            problems.append(f"{where}.links[{i}].type {link.get('type')!r} not in {LINK_TYPES}")
        if "appContext" in link and link.get("type") != "smart":
            problems.append(f"{where}.links[{i}].appContext is only allowed on smart links")
    return problems


def _suggestion_problems(card: dict[str, Any], suggestions: Any, where: str) -> list[str]:
    problems: list[str] = []
    if not isinstance(suggestions, list):
        return [f"{where}.suggestions is not a list"]
    behavior = card.get("selectionBehavior")
    if behavior not in SELECTION_BEHAVIORS:
        problems.append(
            f"{where}.selectionBehavior {behavior!r} must be one of {SELECTION_BEHAVIORS} "
            "when suggestions are present"
        )
    recommended = 0
    for i, suggestion in enumerate(suggestions):
        at = f"{where}.suggestions[{i}]"
        if not isinstance(suggestion, dict):
            problems.append(f"{at} is not a JSON object")
            continue
        if not _text(suggestion.get("label")):
            problems.append(f"{at}.label missing")
        if not _text(suggestion.get("uuid")):
            problems.append(f"{at}.uuid missing (accepted feedback needs it)")
        if suggestion.get("isRecommended") is True:
            recommended += 1
        for j, action in enumerate(suggestion.get("actions") or []):
            problems.extend(_action_problems(action, f"{at}.actions[{j}]"))
    if recommended > 1 and behavior == "at-most-one":
        problems.append(f"{where}: {recommended} recommended suggestions with at-most-one")
    return problems


def _action_problems(action: Any, at: str) -> list[str]:
    if not isinstance(action, dict):
        return [f"{at} is not a JSON object"]
    problems: list[str] = []
    kind = action.get("type")
    if kind not in ACTION_TYPES:
        problems.append(f"{at}.type {kind!r} not in {ACTION_TYPES}")
    if not _text(action.get("description")):
        problems.append(f"{at}.description missing")
    if kind in ("create", "update"):
        resource = action.get("resource")
        if not isinstance(resource, dict) or not _text(resource.get("resourceType")):
            problems.append(f"{at}.resource (a FHIR resource) missing for {kind}")
    if kind == "delete" and not (_text(action.get("resourceId")) or action.get("resource")):
        problems.append(f"{at}.resourceId missing for delete")
    return problems


def response_problems(body: Any) -> list[str]:
    """Problems with the response envelope and every card in it."""
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return ["response is not an object with a 'cards' list"]
    problems: list[str] = []
    uuids: list[str] = []
    for i, card in enumerate(body["cards"]):
        problems.extend(card_problems(card, f"cards[{i}]"))
        if isinstance(card, dict) and _text(card.get("uuid")):
            uuids.append(card["uuid"])
    duplicates = sorted({u for u in uuids if uuids.count(u) > 1})
    if duplicates:
        problems.append(f"card uuids repeated: {', '.join(duplicates)}")
    return problems


NOT_A_REASON = frozenset({"acknowledged", "ack", "seen", "noted"})


def _reason_problems(cards: list[Any]) -> list[str]:
    """F.2a override reasons, whatever the profile: an info card asks for no reason to be
    dismissed (CDS Hooks allows omitting ``overrideReasons``), and "acknowledged" is not a
    reason."""
    problems: list[str] = []
    for i, card in enumerate(cards):
        if not isinstance(card, dict):
            continue
        reasons = card.get("overrideReasons") or []
        if reasons and card.get("indicator") == "info":
            problems.append(f"cards[{i}] is info but offers overrideReasons (F.2a: none)")
        for j, reason in enumerate(reasons):
            code = reason.get("code") if isinstance(reason, dict) else None
            if isinstance(code, str) and code.lower() in NOT_A_REASON:
                problems.append(f"cards[{i}].overrideReasons[{j}] {code!r} is not a reason (F.2a)")
    return problems


def _profile_problems(cards: list[Any], profile: str) -> list[str]:
    """EHR-profile rules that hold whatever the scenario (issue 3: `epic` profile)."""
    if profile != "epic":
        return []
    problems: list[str] = []
    for i, card in enumerate(cards):
        if not isinstance(card, dict):
            continue
        for j, suggestion in enumerate(card.get("suggestions") or []):
            actions = suggestion.get("actions") if isinstance(suggestion, dict) else None
            if isinstance(actions, list) and len(actions) > 1:
                problems.append(
                    f"cards[{i}].suggestions[{j}] has {len(actions)} actions "
                    "(epic profile: one per suggestion)"
                )
        if any(a.get("type") == "update" for a in _actions(card)):
            problems.append(f"cards[{i}] has an update action (epic profile: none)")
        for j, suggestion in enumerate(card.get("suggestions") or []):
            if not isinstance(suggestion, dict):
                continue
            for action in suggestion.get("actions") or []:
                resource = action.get("resource") if isinstance(action, dict) else None
                if not isinstance(resource, dict) or action.get("type") != "create":
                    continue
                named = ingredient_of(resource)
                if named == DIAZEPAM:
                    problems.append(
                        f"cards[{i}].suggestions[{j}] creates diazepam "
                        "(epic profile: never re-create it, F.2a)"
                    )
                elif named != NALOXONE and suggestion.get("isRecommended") is True:
                    problems.append(
                        f"cards[{i}].suggestions[{j}] recommends an alternative "
                        "(epic profile: none is isRecommended, F.2a)"
                    )
    return problems


# --- comparison ---------------------------------------------------------------------------------


def _name(ingredient: str | None) -> str:
    if ingredient is None:
        return "none"
    name = INGREDIENT_NAMES.get(ingredient)
    return f"{name} ({ingredient})" if name else ingredient


def _short(ingredient: str) -> str:
    return INGREDIENT_NAMES.get(ingredient, ingredient)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _listing(values: Iterable[str]) -> str:
    values = sorted(values)
    return "[" + ", ".join(values) + "]" if values else "[]"


def compare(
    expected: Mapping[str, Any],
    body: Any,
    *,
    profile: str = "standard",
    request: Mapping[str, Any] | None = None,
) -> list[Mismatch]:
    """Every way the response differs from the expected outcome (empty list: it matches).

    ``request`` (the hook request that was sent) is needed only by `max_dose_reduction_pct`,
    which compares rewritten doses with the pended diazepam order's daily dose."""
    if profile not in PROFILES:
        raise ValueError(f"unknown EHR profile {profile!r}; known: {', '.join(PROFILES)}")
    mismatches = [
        Mismatch("card validity", "valid CDS Hooks 2.0 cards", p) for p in response_problems(body)
    ]
    if not isinstance(body, dict) or not isinstance(body.get("cards"), list):
        return mismatches
    cards = body["cards"]
    mismatches += [
        Mismatch("EHR profile", f"{profile} rules", p) for p in _profile_problems(cards, profile)
    ]
    mismatches += [
        Mismatch("override reasons", "F.2a override reasons", p) for p in _reason_problems(cards)
    ]
    observed = observe(cards)

    count = expected.get("card_count")
    if count is not None and len(cards) != count:
        got = ", ".join(sorted(observed.topics)) or "none"
        mismatches.append(Mismatch("card count", str(count), f"{len(cards)} ({got})"))

    for topic, spec in (expected.get("topics") or {}).items():
        mismatches += _compare_topic(topic, spec, observed, profile)
    for topic in expected.get("absent_topics") or []:
        if topic in observed.topics:
            got = "/".join(observed.indicators(topic))
            mismatches.append(Mismatch(f"topic {topic}", "absent", f"present ({got})"))

    # epic: alternatives are additions, never recommended, and diazepam is never re-created
    # (F.2a; _profile_problems checks both), so these two are written for the standard profile
    if "recommended_alternative" in expected and profile == "standard":
        want = expected["recommended_alternative"]
        want_set = set() if want is None else {str(want)}
        if observed.recommended != want_set:
            mismatches.append(
                Mismatch(
                    "recommended alternative",
                    _name(want),
                    ", ".join(_name(i) for i in sorted(observed.recommended)) or "none",
                )
            )
    for ingredient in expected.get("excluded_alternatives") or []:
        if str(ingredient) in observed.created:
            mismatches.append(
                Mismatch(f"alternative {_name(str(ingredient))}", "not offered", "offered")
            )

    if "capped_days" in expected and profile == "standard":
        want = expected["capped_days"]
        want_days = set() if want is None else {float(want)}
        if request is not None:  # a rewrite that keeps the pended supply caps nothing
            observed.capped_days -= _pended_supplies(request) - want_days
        if observed.capped_days != want_days:
            got = (
                ", ".join(
                    "an order without expectedSupplyDuration in days"
                    if d < 0
                    else f"{_num(d)} days"
                    for d in sorted(observed.capped_days)
                )
                or "no capped order on a duration-limit card"
            )
            mismatches.append(
                Mismatch(
                    "capped days",
                    "no capped order on a duration-limit card" if want is None else f"{want} days",
                    got,
                )
            )
    if "cancel_choice" in expected:
        want = str(expected["cancel_choice"])
        got = cancel_state(cards, request, profile)
        # epic: every replacement is split into "Remove" + "Add", so a Remove is always
        # there beside an alternative; "absent" is written for the standard profile
        if got != want and not (want == "absent" and profile == "epic"):
            mismatches.append(Mismatch("drug-free cancel choice", want, got))
    mismatches += _compare_safety(expected, cards, request)
    return mismatches


def _pended_diazepam_refs(request: Mapping[str, Any] | None) -> set[str]:
    """'MedicationRequest/id' of every pended diazepam order in the request."""
    context = request.get("context") if isinstance(request, Mapping) else None
    drafts = context.get("draftOrders") if isinstance(context, Mapping) else None
    out: set[str] = set()
    for entry in (drafts.get("entry") if isinstance(drafts, Mapping) else None) or []:
        resource = entry.get("resource") if isinstance(entry, Mapping) else None
        if (
            isinstance(resource, Mapping)
            and resource.get("resourceType") in ("MedicationRequest", "MedicationOrder")
            and ingredient_of(resource) == DIAZEPAM
        ):
            out.add(f"{resource['resourceType']}/{resource.get('id')}")
    return out


def cancel_state(
    cards: Iterable[Any], request: Mapping[str, Any] | None = None, profile: str = "standard"
) -> str:
    """Whether the response offers the drug-free choice (committee review round 2, N2/N3): a
    suggestion that only removes the pended diazepam order(s) and orders nothing instead.
    "recommended" when it is ``isRecommended``, "offered" when it is there but not
    recommended, "absent" when there is none. In the standard profile one suggestion must
    remove every pended diazepam order (a "keep only one" removes all but one: not a
    cancel); in epic (one action per suggestion) the Remove suggestions together must, and
    they are recommended when each is. Without the request, any suggestion that only
    removes counts."""
    wanted = _pended_diazepam_refs(request)
    removes: list[tuple[set[str], bool]] = []
    for _, suggestion in _suggestions_of(cards):
        actions = [a for a in suggestion.get("actions") or [] if isinstance(a, dict)]
        if actions and all(a.get("type") == "delete" for a in actions):
            refs = {str(a.get("resourceId")) for a in actions}
            removes.append((refs, suggestion.get("isRecommended") is True))
    if not removes:
        return "absent"
    if not wanted:
        return "recommended" if any(rec for _, rec in removes) else "offered"
    if profile == "epic":
        if not all(any(ref in refs for refs, _ in removes) for ref in wanted):
            return "absent"
        recommended = all(any(ref in refs and rec for refs, rec in removes) for ref in wanted)
        return "recommended" if recommended else "offered"
    whole = [rec for refs, rec in removes if wanted <= refs]
    if not whole:
        return "absent"
    return "recommended" if any(whole) else "offered"


# --- safety invariants (knowledge base F.0) ------------------------------------------------------


def _suggestions_of(cards: Iterable[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for card in cards:
        if not isinstance(card, dict):
            continue
        for suggestion in card.get("suggestions") or []:
            if isinstance(suggestion, dict):
                yield topic_of(card), suggestion


def _diazepam_rewrites(cards: Iterable[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(topic, resource) of every diazepam MedicationRequest a suggestion creates or updates."""
    for topic, suggestion in _suggestions_of(cards):
        for action in suggestion.get("actions") or []:
            if not isinstance(action, dict) or action.get("type") not in ("create", "update"):
                continue
            resource = action.get("resource")
            if (
                isinstance(resource, dict)
                and resource.get("resourceType") == "MedicationRequest"
                and ingredient_of(resource) == DIAZEPAM
            ):
                yield topic, resource


_PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1.0, "wk": 7.0, "mo": 30.0}


def daily_dose_mg(resource: Mapping[str, Any]) -> float | None:
    """Total scheduled mg per day of a MedicationRequest (doses in mg only; None: not derivable)."""
    total = 0.0
    found = False
    for dosage in resource.get("dosageInstruction") or []:
        if not isinstance(dosage, dict):
            continue
        dose = None
        for rate in dosage.get("doseAndRate") or []:
            if not isinstance(rate, dict):
                continue
            quantity = rate.get("doseQuantity")
            if not isinstance(quantity, dict):
                dose_range = rate.get("doseRange")
                quantity = dose_range.get("high") if isinstance(dose_range, dict) else None
            if (
                isinstance(quantity, dict)
                and str(quantity.get("code") or quantity.get("unit")) == "mg"
            ):
                value = quantity.get("value")
                if isinstance(value, int | float):
                    dose = float(value)
        timing = dosage.get("timing")
        repeat = timing.get("repeat") if isinstance(timing, dict) else None
        if dose is None or not isinstance(repeat, dict):
            continue
        frequency = repeat.get("frequencyMax") or repeat.get("frequency") or 1
        period = repeat.get("period") or 1
        unit = _PERIOD_DAYS.get(str(repeat.get("periodUnit") or "d"))
        if unit is None or not isinstance(frequency, int | float) or not period:
            continue
        total += dose * float(frequency) / (float(period) * unit)
        found = True
    return total if found else None


def _pended_diazepam(request: Mapping[str, Any] | None) -> dict[str, Any] | None:
    context = request.get("context") if isinstance(request, Mapping) else None
    drafts = context.get("draftOrders") if isinstance(context, dict) else None
    for entry in (drafts.get("entry") if isinstance(drafts, dict) else None) or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if (
            isinstance(resource, dict)
            and resource.get("resourceType") == "MedicationRequest"
            and ingredient_of(resource) == DIAZEPAM
        ):
            return resource
    return None


def _compare_safety(
    expected: Mapping[str, Any], cards: list[Any], request: Mapping[str, Any] | None
) -> list[Mismatch]:
    out: list[Mismatch] = []
    floor = expected.get("min_cards")
    if floor is not None and len(cards) < floor:
        out.append(Mismatch("card count", f"at least {floor}", str(len(cards))))
    limit = expected.get("max_cards")
    if limit is not None and len(cards) > limit:
        got = ", ".join(sorted(topic_of(c) for c in cards if isinstance(c, dict)))
        out.append(Mismatch("card count", f"at most {limit}", f"{len(cards)} ({got})"))
    if expected.get("no_delete"):
        for topic, suggestion in _suggestions_of(cards):
            if any(
                isinstance(a, dict) and a.get("type") == "delete"
                for a in suggestion.get("actions") or []
            ):
                out.append(Mismatch(f"topic {topic} suggestion", "no delete", "a delete action"))
    for topic, suggestion in _suggestions_of(cards):
        if topic in (expected.get("not_recommended") or []) and suggestion.get("isRecommended"):
            out.append(Mismatch(f"topic {topic} suggestion", "not isRecommended", "isRecommended"))
    least = expected.get("min_supply_days")
    if least is not None:
        for topic, resource in _diazepam_rewrites(cards):
            days = _supply_days(resource)
            if days is not None and days < least:
                out.append(
                    Mismatch(
                        f"topic {topic} diazepam order supply",
                        f"at least {least} days",
                        f"{_num(days)} days",
                    )
                )
    most = expected.get("max_dose_reduction_pct")
    if most is not None:
        pended = _pended_diazepam(request)
        before = daily_dose_mg(pended) if pended is not None else None
        if before is None:
            out.append(
                Mismatch("dose reduction", "a pended diazepam order with a daily dose", "none")
            )
        else:
            for topic, resource in _diazepam_rewrites(cards):
                after = daily_dose_mg(resource)
                if after is None or before <= 0:
                    continue
                cut = 100.0 * (before - after) / before
                if cut > most + 1e-9:
                    out.append(
                        Mismatch(
                            f"topic {topic} diazepam dose",
                            f"a cut of at most {most} % from {_num(before)} mg/day",
                            f"{_num(after)} mg/day ({cut:.0f} % less)",
                        )
                    )
    return out


def _compare_topic(
    topic: str, spec: Mapping[str, Any], observed: Observed, profile: str
) -> list[Mismatch]:
    what = f"topic {topic}"
    if topic not in observed.topics:
        if spec.get("optional"):
            return []
        return [Mismatch(what, f"present ({_indicator_text(spec)})", "absent")]
    out: list[Mismatch] = []
    allowed = spec.get("indicator")
    if allowed is not None:
        allowed_set = {allowed} if isinstance(allowed, str) else set(allowed)
        got = observed.indicators(topic)
        if any(i not in allowed_set for i in got):
            out.append(Mismatch(f"{what} indicator", "/".join(sorted(allowed_set)), "/".join(got)))
    if profile != "standard":
        return out  # action types are written for the standard profile
    types = observed.action_types(topic)
    if "action_types" in spec and types != set(spec["action_types"]):
        out.append(
            Mismatch(f"{what} action types", _listing(spec["action_types"]), _listing(types))
        )
    missing = set(spec.get("action_types_include") or []) - types
    if missing:
        out.append(
            Mismatch(f"{what} action types", f"including {_listing(missing)}", _listing(types))
        )
    return out


def _indicator_text(spec: Mapping[str, Any]) -> str:
    allowed = spec.get("indicator")
    if allowed is None:
        return "any indicator"
    return allowed if isinstance(allowed, str) else "/".join(allowed)


def describe_expected(expected: Mapping[str, Any]) -> str:
    """A one-line summary of the expected outcome for the replay table."""
    parts = []
    for topic, spec in sorted((expected.get("topics") or {}).items()):
        mark = "?" if spec.get("optional") else ""
        parts.append(f"{topic}{mark}:{_indicator_text(spec)}")
    if expected.get("card_count") == 0:
        parts.append("(no cards)")
    if expected.get("recommended_alternative"):
        parts.append("rec=" + _short(str(expected["recommended_alternative"])))
    if expected.get("capped_days"):
        parts.append(f"cap={expected['capped_days']}")
    if expected.get("min_cards") is not None:
        parts.append(f"cards>={expected['min_cards']}")
    if expected.get("max_cards") is not None:
        parts.append(f"cards<={expected['max_cards']}")
    if expected.get("no_delete"):
        parts.append("no-delete")
    if expected.get("cancel_choice"):
        parts.append(f"cancel={expected['cancel_choice']}")
    if expected.get("min_supply_days") is not None:
        parts.append(f"supply>={expected['min_supply_days']}")
    if expected.get("max_dose_reduction_pct") is not None:
        parts.append(f"cut<={expected['max_dose_reduction_pct']}%")
    return " ".join(parts) or "(anything valid)"
