"""The F.0 safety invariants (knowledge base section F.0, issue 14) as property tests.

Hypothesis generates whole ``order-sign`` requests (``tests/support/patients.py``): a patient
aged 3 months to 100 years, a diazepam draft (oral tablet, injection, rectal gel, nasal spray or
buccal film; 1–4 doses a day; 1–90 days; an optional reasonCode), active medications and other
drafts from one pool (a running diazepam Rx, muscle relaxants, CYP1A2 inhibitors, an MAOI,
opioids, gabapentin, zolpidem), each coded with RxNorm code + display, code only, or text only,
conditions, an eGFR and allergies. Each request goes through the real service in-process, in
both EHR profiles (``standard`` and ``epic``).

The oracle is written from the knowledge base (sections A, B, D, F.0–F.3), not from the rule
code. It asserts only what the table makes certain; where a row is ambiguous the case is left
unchecked (or skipped with ``assume``) and a comment says why.

Invariants checked (one test each, per profile; within a test each kind of violation raises its
own AssertionError subclass, so Hypothesis reports every kind with its own minimal patient):
- F.0-1 never an abrupt stop: a running diazepam Rx started ≥ 28 days before the order (the
  earliest of authoredOn / dispenseRequest.validityPeriod.start) gets no suggestion that deletes
  the diazepam draft, none that creates a muscle-relaxant replacement (R13: alternatives "in text
  only"), no diazepam rewrite with a supply under 14 days, no rewrite cutting the daily dose by
  more than 25 % (a rewrite keeping an order's own short supply is not a cut).
- F.0-2 / F.3 never suggest what the patient must not take: no created alternative meets a hard
  exclusion from any source in the request (see ``hard_exclusions`` for the list).
- F.0-3 never remove seizure or emergency therapy: IV/IM/rectal/nasal/buccal orders and orders
  stated for seizure, status epilepticus or alcohol withdrawal get no delete of the draft; and
  (R1) a non-oral order gets no ``critical`` contraindication from the tablet label's list. A
  non-oral order stated for a musculoskeletal reason is a separate test: R8 takes it off the
  safety pathway, F.0-3 (which overrides the rows) still forbids the delete.
- F.0-4 inference never silences: an oral order off the stated safety pathway with myasthenia
  gravis, sleep apnea, severe hepatic failure, a diazepam allergy or age under 6 months gets a
  critical ``diazepam-contraindication`` card, whatever the (inferred) indication; an opioid
  active or drafted always gets ``opioid-benzodiazepine``.
- F.0-5 safety topics are never dropped, however many findings: ``diazepam-contraindication``,
  ``opioid-benzodiazepine``, ``substance-use-risk``, ``taper-required``,
  ``beers-benzodiazepine``.
- F.0-6 alarm burden: a long supply alone is never ``critical``; a typical older-adult
  acute-spasm order with no other findings gets at most three cards.
- F.0-7 (the part a machine can check): baclofen or tizanidine offered for a stated acute muscle
  spasm is called off-label (F.3).
- Every card is CDS Hooks 2.0-valid (``cds_service.compare.card_problems``); under the ``epic``
  profile every suggestion has one action and there is no ``update``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import count
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask import Flask
from hypothesis import HealthCheck, assume, given, note, settings
from hypothesis import strategies as st

from cds_service.app import create_app
from cds_service.compare import card_problems, ingredient_of, topic_of
from cds_service.discovery import PREFETCH_TEMPLATES
from cds_service.hook_request import validate as validate_hook_request
from tests.support import patients as pt
from tests.support.patients import Case, Med

SIGN = "/cds-services/diazepam-order-sign"
PROFILES = ("standard", "epic")
# About 3 ms per request: with every invariant holding the module takes about 15 s of CPU
# (startup included). While invariants fail, shrinking each distinct failure to a minimal
# patient costs more (about 60 s of CPU on today's rules, 20 failing tests).
EXAMPLES = 40
INVARIANT = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
by_profile = pytest.mark.parametrize("profile", PROFILES)

CONTRA = "diazepam-contraindication"
OPIOID = "opioid-benzodiazepine"
SUBSTANCE = "substance-use-risk"
TAPER = "taper-required"
BEERS = "beers-benzodiazepine"

BACLOFEN, TIZANIDINE, CYCLOBENZAPRINE = "1292", "57258", "21949"
METHOCARBAMOL, METAXALONE, CARISOPRODOL = "6845", "59078", "2101"
DIAZEPAM = "3322"
ALTERNATIVES = {
    BACLOFEN: "baclofen",
    TIZANIDINE: "tizanidine",
    CYCLOBENZAPRINE: "cyclobenzaprine",
    METHOCARBAMOL: "methocarbamol",
    METAXALONE: "metaxalone",
    CARISOPRODOL: "carisoprodol",
}
_DAYS = {"d": 1.0, "day": 1.0, "days": 1.0, "wk": 7.0, "week": 7.0, "weeks": 7.0, "mo": 30.0}
_PERIOD_DAYS = {"d": 1.0, "h": 1 / 24, "wk": 7.0, "min": 1 / 1440}

# --- running the service ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    """One app per EHR profile, shared by every example (auth off, repeats never suppressed)."""
    built = {}
    for profile in PROFILES:
        data_dir = tmp_path_factory.mktemp(f"invariants-{profile}") / "data"
        built[profile] = create_app(
            {
                "auth": "disabled",
                "data_dir": str(data_dir),
                "ehr_profile": profile,
                "suppress_repeats": False,
            }
        )
    return built


_serial = count(1)


def advise(apps: dict[str, Flask], profile: str, case: Case) -> list[dict[str, Any]]:
    response = apps[profile].test_client().post(SIGN, json=case.request(next(_serial)))
    assert response.status_code == 200, response.get_data()[:300]
    cards = response.get_json()["cards"]
    note(f"cards: {[(topic_of(c), c.get('indicator'), c.get('summary')) for c in cards]}")
    return cards


def topics(cards: list[dict[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for card in cards:
        out.setdefault(topic_of(card), []).append(str(card.get("indicator")))
    return out


def actions(cards: list[dict[str, Any]]) -> Iterator[tuple[dict, dict, dict]]:
    for card in cards:
        for suggestion in card.get("suggestions") or []:
            for action in suggestion.get("actions") or []:
                yield card, suggestion, action


def where(card: dict, suggestion: dict) -> str:
    return f"[{topic_of(card)}] {card.get('summary')!r} / suggestion {suggestion.get('label')!r}"


_KINDS: dict[str, type[AssertionError]] = {}


def violated(kind: str, message: str) -> AssertionError:
    """An AssertionError whose class names the kind of violation. Hypothesis treats failures
    of different exception types as distinct bugs, so each kind (a dropped topic, an excluded
    alternative, a delete, a short rewrite) is reported with its own minimal example instead of
    the most frequent one hiding the others."""
    if kind not in _KINDS:
        name = "".join(part[:1].upper() + part[1:] for part in kind.replace("-", " ").split())
        _KINDS[kind] = type(name, (AssertionError,), {})
    return _KINDS[kind](message)


def deletes_draft(action: dict, case: Case) -> bool:
    if action.get("type") != "delete":
        return False
    target = str(action.get("resourceId") or (action.get("resource") or {}).get("id") or "")
    return target in (case.draft_id, f"MedicationRequest/{case.draft_id}")


def diazepam_rewrite(action: dict, case: Case) -> dict | None:
    """The MedicationRequest of an update/create that rewrites (or re-creates) the diazepam."""
    resource = action.get("resource")
    if action.get("type") not in ("update", "create") or not isinstance(resource, dict):
        return None
    if resource.get("resourceType") != "MedicationRequest":
        return None
    if resource.get("id") == case.draft_id or ingredient_of(resource) == DIAZEPAM:
        return resource
    return None


def created_alternatives(cards: list[dict[str, Any]]) -> Iterator[tuple[str, dict, dict]]:
    for card, suggestion, action in actions(cards):
        resource = action.get("resource")
        if action.get("type") != "create" or not isinstance(resource, dict):
            continue
        ingredient = ingredient_of(resource)
        if ingredient in ALTERNATIVES:
            yield ingredient, card, suggestion


def supply_days(resource: dict) -> float | None:
    """F.1 days_supply from expectedSupplyDuration, times (1 + refills)."""
    dispense = resource.get("dispenseRequest") or {}
    duration = dispense.get("expectedSupplyDuration") or {}
    value = duration.get("value")
    factor = _DAYS.get(str(duration.get("code") or duration.get("unit") or "d"))
    if not isinstance(value, int | float) or factor is None:
        return None
    repeats = dispense.get("numberOfRepeatsAllowed")
    return value * factor * (1 + (repeats if isinstance(repeats, int) else 0))


def daily_mg(resource: dict) -> float | None:
    """Daily diazepam dose of a structured MedicationRequest (None when it cannot be read)."""
    dosages = resource.get("dosageInstruction") or []
    if not dosages:
        return None
    dosage = dosages[0]
    repeat = (dosage.get("timing") or {}).get("repeat") or {}
    rates = dosage.get("doseAndRate") or []
    quantity = (rates[0].get("doseQuantity") if rates else None) or {}
    value = quantity.get("value")
    if not isinstance(value, int | float):
        return None
    unit = str(quantity.get("code") or quantity.get("unit") or "")
    if unit != "mg":
        codes = (resource.get("medicationCodeableConcept") or {}).get("coding") or []
        strength = next(
            (pt.TABLET_MG[c.get("code")] for c in codes if c.get("code") in pt.TABLET_MG), None
        )
        if unit.lower() not in ("tab", "tablet", "tablets", "{tbl}") or strength is None:
            return None
        value = value * strength
    frequency = repeat.get("frequencyMax") or repeat.get("frequency") or 1
    period = repeat.get("period") or 1
    period_days = _PERIOD_DAYS.get(str(repeat.get("periodUnit") or "d"))
    if period_days is None:
        return None
    return value * frequency / (period * period_days)


# --- the oracle (knowledge base F.1–F.3) ----------------------------------------------------


def chronic_benzo(case: Case) -> bool:
    """F.1: a running diazepam Rx whose earliest start is ≥ 28 days before the order."""
    return (case.chronic_days or 0) >= 28


def stated_safety_pathway(case: Case) -> bool:
    """F.0-3/R8–R10: a stated seizure, status epilepticus or alcohol-withdrawal reason, or a
    non-oral route (IV/IM, rectal, nasal, buccal). A problem-list seizure is *not* stated."""
    return not case.oral or case.reason in pt.EMERGENCY_REASONS


# A.3 tablet-label contraindications in the condition pool (K70.40 is severe: F.1 hepatic);
# the injection and rescue labels do not list them (R1).
TABLET_ONLY_CONTRAINDICATIONS = ("myasthenia-gravis", "sleep-apnea", "alcoholic-hepatic-failure")


def oral_contraindications(case: Case) -> list[str]:
    """A.3 / R1 for tablets, on an oral order off the stated safety pathway.

    Oral orders with a stated seizure or withdrawal reason are left out: F.0-4 exempts the
    stated safety pathway while R8 keeps "R1 (the product's own list)" there, so the table does
    not settle whether the card must fire.
    """
    if not case.oral or case.reason in pt.EMERGENCY_REASONS:
        return []
    found = [
        c for c in TABLET_ONLY_CONTRAINDICATIONS if case.has(c)
    ]  # K70.40 is severe (F.1 hepatic)
    if "diazepam" in case.allergies:
        found.append("diazepam allergy")
    if case.age_days < 170:  # under 6 months, with a margin around the boundary
        found.append("age under 6 months")
    return found


def contraindication_expected(case: Case) -> bool:
    # Hypersensitivity is on every diazepam product's list (A.3, R1: injection and rescue too).
    return bool(oral_contraindications(case)) or "diazepam" in case.allergies


def beers_expected(case: Case) -> bool:
    """R3/R4: age ≥ 65, oral, not in hospice (C scope, R20), not on a stated emergency pathway.

    An exception indication (GAD: R3x "info at most"; a seizure only inferred from the problem
    list) leaves Table 2 open, so it is only asserted when a Table 3 syndrome (documented falls
    or dementia) is present: Table 3 has no exceptions (R4).
    """
    if case.age_years < 65 or not case.oral or case.has("hospice"):
        return False
    if case.reason in pt.EMERGENCY_REASONS:
        return False  # Beers exceptions (R3x); R4 on a stated withdrawal is only a "note"
    if case.has("falls-history") or case.has("dementia"):
        return True
    if case.reason == "gad":
        return False
    # With no reasonCode the indication is inferred by priority (F.1): a seizure code wins.
    return not (case.reason is None and case.has("seizure-history"))


def substance_expected(case: Case) -> bool:
    """R15: alcohol use disorder, unless the stated indication is alcohol withdrawal (then an
    info note whose topic the table does not name). R8 keeps R15 on the seizure pathway."""
    return case.has("alcohol-use-disorder") and case.reason != "alcohol-withdrawal"


def taper_expected(case: Case) -> bool:
    """R13 on an oral order. Left out: stated emergency reasons and non-oral orders (R8 lists
    only R1/R2/R14/R15 there) and hospice (R20 "no taper push" against R13's info card)."""
    return (
        chronic_benzo(case)
        and case.oral
        and case.reason not in pt.EMERGENCY_REASONS
        and not case.has("hospice")
    )


def expected_safety_topics(case: Case) -> dict[str, str]:
    """Safety topic → why it must be on a card (F.0-5)."""
    out = {}
    if contraindication_expected(case):
        out[CONTRA] = ", ".join(oral_contraindications(case)) or "diazepam allergy"
    if case.takes(pt.OPIOIDS):
        out[OPIOID] = "opioid active or drafted (R2)"
    if substance_expected(case):
        out[SUBSTANCE] = "alcohol use disorder (R15)"
    if taper_expected(case):
        out[TAPER] = f"on diazepam for {case.chronic_days} days (R13)"
    if beers_expected(case):
        out[BEERS] = f"age {case.age_years} (R3/R4)"
    return out


def hard_exclusions(case: Case) -> dict[str, list[str]]:
    """Alternative ingredient → the hard exclusions (F.3, F.0-2, R7, R18, R19, B.4) that hold.

    Sources read: active meds AND the other drafts (F.1 'interacting drugs'), conditions,
    allergies, age, eGFR, the stated reason. Soft exclusions (warn/demote) are not checked, nor
    is baclofen's "acute spasm with no spasticity" filter, whose scope F.3 leaves unclear, nor
    cyclobenzaprine with cirrhosis ("moderate or severe" hepatic impairment is not mapped to
    codes; only hepatic failure is certainly severe).
    """
    out: dict[str, list[str]] = {}

    def exclude(ingredient: str, why: str) -> None:
        out.setdefault(ingredient, []).append(why)

    for ingredient in ALTERNATIVES:
        if case.age_years < 18:
            exclude(ingredient, "child or infant (R18)")
    exclude(CARISOPRODOL, "never an alternative (B.4)")
    for name, ingredient in pt.ALTERNATIVE_DRUGS.items():
        if case.takes(name):
            exclude(ingredient, "already taking it, active or drafted (R19)")
        if name in case.allergies:
            exclude(ingredient, "allergy")
    hepatic_failure = case.has("alcoholic-hepatic-failure")
    # cyclobenzaprine (B.3, F.3)
    if case.takes(pt.MAOIS):
        exclude(CYCLOBENZAPRINE, "MAOI within 14 days")
    for condition, why in (
        ("av-block", "AV block"),
        ("heart-failure", "heart failure"),
        ("recent-mi", "MI within 30 days"),
        ("hyperthyroidism", "hyperthyroidism"),
    ):
        if case.has(condition):
            exclude(CYCLOBENZAPRINE, why)
    if hepatic_failure:
        exclude(CYCLOBENZAPRINE, "severe hepatic impairment")
    if case.reason in pt.SPASTICITY_REASONS:
        exclude(CYCLOBENZAPRINE, "spasticity (R7)")
        exclude(METHOCARBAMOL, "spasticity (R7)")
    # tizanidine
    if case.takes(pt.CYP1A2_STRONG):
        exclude(TIZANIDINE, "ciprofloxacin/fluvoxamine (strong CYP1A2 inhibitor)")
    if hepatic_failure or case.has("cirrhosis"):
        exclude(TIZANIDINE, "hepatic impairment")
    # baclofen (Beers 2023 kidney table; eGFR < 30 at any age [D])
    if case.egfr is not None and (case.egfr < 30 or (case.age_years >= 65 and case.egfr < 60)):
        exclude(BACLOFEN, f"eGFR {case.egfr}")
    # methocarbamol / metaxalone
    if case.age_years >= 65:
        exclude(METHOCARBAMOL, "Beers avoid, age 65 or older")
        exclude(METAXALONE, "Beers avoid, age 65 or older")
    if hepatic_failure or (case.egfr is not None and case.egfr < 30):
        exclude(METAXALONE, "significant hepatic or renal impairment")
    return out


# --- strategies for each invariant ----------------------------------------------------------

_opioid_med = st.builds(
    Med, drug=st.sampled_from(sorted(pt.OPIOIDS)), style=st.sampled_from(pt.CODING_STYLES)
)


@st.composite
def with_opioid(draw: st.DrawFn, base: st.SearchStrategy[Case]) -> Case:
    """A case with one opioid added to the active meds or to the other drafts."""
    case = draw(base)
    opioid = draw(_opioid_med)
    if draw(st.booleans(), label="opioid drafted (else active)"):
        drafts = tuple(m for m in case.drafts if m.drug not in pt.OPIOIDS) + (opioid,)
        return replace(case, drafts=drafts)
    active = tuple(m for m in case.active if m.drug not in pt.OPIOIDS) + (opioid,)
    return replace(case, active=active)


# Orders R8 puts on the safety pathway too: a stated seizure / withdrawal reason, or a non-oral
# product with no musculoskeletal reason.
_pathway_reasons = (None, "gad", *sorted(pt.EMERGENCY_REASONS))
emergency_cases = st.one_of(
    pt.cases(products=pt.NON_ORAL_PRODUCTS, reasons=_pathway_reasons),
    pt.cases(reasons=tuple(sorted(pt.EMERGENCY_REASONS))),
    # Issue 14 finding 7: IV/rescue orders with a *tablet* contraindication (sleep apnea ...).
    st.sampled_from(TABLET_ONLY_CONTRAINDICATIONS).flatmap(
        lambda condition: pt.cases(
            products=pt.NON_ORAL_PRODUCTS,
            reasons=_pathway_reasons,
            required_conditions=(condition,),
            allergies=(),
        )
    ),
)
# Non-oral orders stated for a musculoskeletal reason: R8 leaves them off the safety pathway
# ("with no musculoskeletal reason"), but F.0-3, which overrides the rows, still forbids a delete.
non_oral_musculoskeletal_cases = pt.cases(
    products=pt.NON_ORAL_PRODUCTS,
    reasons=("back-spasm", "ms-spasticity", "cp-spasticity"),
)

_off_pathway_reasons = (None, "back-spasm", "gad", "ms-spasticity", "cp-spasticity")


@st.composite
def contraindicated_oral_cases(draw: st.DrawFn) -> Case:
    """Oral orders off the stated pathway with a tablet contraindication, often alongside a
    problem-list seizure code that would infer a seizure indication (issue 14 finding 4)."""
    contra = draw(st.sampled_from(TABLET_ONLY_CONTRAINDICATIONS))
    inferred_seizure = draw(st.booleans(), label="R56.9 on the problem list")
    required = (contra, "seizure-history") if inferred_seizure else (contra,)
    return draw(
        pt.cases(
            products=pt.ORAL_PRODUCTS,
            reasons=_off_pathway_reasons,
            required_conditions=required,
        )
    )


busy_cases = pt.cases(min_age_days=pt.years(18), max_conditions=9, max_meds=5)

simple_spasm_cases = pt.cases(
    min_age_days=pt.years(1),
    products=pt.ORAL_PRODUCTS,
    reasons=(None, "back-spasm"),
    chronic=False,
    active_drugs=(),
    draft_drugs=(),
    conditions=(),
    max_meds=0,
    allergies=(),
    min_days=15,
)

# F.0-6 / issue 14 finding 13: "a typical older-adult acute-spasm order gets at most 3 cards".
# Typical: 65 or older, stated back spasm, kidney function known and fine, nothing else.
typical_older_spasm_cases = pt.cases(
    min_age_days=pt.years(65),
    products=pt.ORAL_PRODUCTS,
    reasons=("back-spasm",),
    chronic=False,
    active_drugs=(),
    draft_drugs=(),
    conditions=(),
    max_meds=0,
    allergies=(),
    egfr=(60, 120),
)

# F.0-1: an older long-term user renewing an oral order (issue 14 finding 1: the geriatric
# starting-dose rewrite is for new starts only).
older_renewal_cases = pt.cases(
    min_age_days=pt.years(65),
    products=pt.ORAL_PRODUCTS,
    reasons=(None, "back-spasm", "gad"),
    chronic=True,
    conditions=(),
    allergies=(),
    max_meds=0,
    min_days=8,  # long enough for a duration card, whose rewrite carries any dose change
)

# F.0-2 / issue 14 finding 5: a CYP1A2 inhibitor or an MAOI, active or in the same order set,
# coded with product code + display, product code only, or text only; adults, no other
# exclusion, so an alternative is likely to be offered.
_interacting = st.builds(
    Med,
    drug=st.sampled_from(sorted(pt.CYP1A2_STRONG | pt.MAOIS)),
    style=st.sampled_from(pt.CODING_STYLES),
)


@st.composite
def interacting_drug_cases(draw: st.DrawFn) -> Case:
    case = draw(
        pt.cases(
            min_age_days=pt.years(18),
            max_age_days=pt.years(64),
            products=pt.ORAL_PRODUCTS,
            reasons=(None, "back-spasm"),
            chronic=False,
            active_drugs=(),
            draft_drugs=(),
            conditions=(),
            allergies=(),
        )
    )
    med = draw(_interacting)
    if draw(st.booleans(), label="drafted (else active)"):
        return replace(case, drafts=(med,))
    return replace(case, active=(med,))


# --- the invariants ---------------------------------------------------------------------------


@by_profile
@INVARIANT
@given(case=st.one_of(pt.cases(chronic=True), older_renewal_cases))
def test_f0_1_long_term_user_is_never_stopped_abruptly(apps, profile, case):
    cards = advise(apps, profile, case)
    current = case.daily_mg if case.oral else None
    found: dict[str, str] = {}  # kind -> first message, raised rarest kind first
    for card, suggestion, action in actions(cards):
        resource = diazepam_rewrite(action, case)
        new = daily_mg(resource) if resource is not None else None
        if current is not None and new is not None and new < 0.75 * current - 1e-9:
            found.setdefault(
                "DoseCutOver25Percent",
                f"cuts the daily dose from {current:g} to {new:g} mg (over 25 %): "
                f"{where(card, suggestion)}",
            )
        days = supply_days(resource) if resource is not None else None
        # A rewrite that keeps an already short order's own supply (e.g. only adding a
        # reasonCode) shortens nothing; one that cuts the supply below 14 days does.
        if days is not None and days < 14 and days < case.days_supply:
            found.setdefault(
                "ShortRewrite",
                f"rewrites diazepam from {case.days_supply} to {days:g} days (under 14): "
                f"{where(card, suggestion)}",
            )
        if deletes_draft(action, case):
            found.setdefault("AbruptStop", f"deletes the diazepam order: {where(card, suggestion)}")
    for ingredient, card, suggestion in created_alternatives(cards):
        found.setdefault(
            "ReplacementOffered",
            f"offers {ALTERNATIVES[ingredient]} to replace diazepam (R13: alternatives in text "
            f"only): {where(card, suggestion)}",
        )
    for kind in ("DoseCutOver25Percent", "ShortRewrite", "ReplacementOffered", "AbruptStop"):
        if kind in found:
            note(f"all violations: {sorted(found)}")
            raise violated(kind, found[kind])


@by_profile
@INVARIANT
@given(case=pt.cases())
def test_f0_2_no_alternative_meets_a_hard_exclusion(apps, profile, case):
    excluded = hard_exclusions(case)
    note(f"hard exclusions: {excluded}")
    cards = advise(apps, profile, case)
    for ingredient, card, suggestion in created_alternatives(cards):
        if ingredient in excluded:
            raise violated(
                f"Excluded {ALTERNATIVES[ingredient]} offered",
                f"offers {ALTERNATIVES[ingredient]} despite {excluded[ingredient]}: "
                f"{where(card, suggestion)}",
            )


@by_profile
@INVARIANT
@given(case=interacting_drug_cases())
def test_f0_2_interacting_drugs_are_seen_in_drafts_and_in_any_coding(apps, profile, case):
    excluded = hard_exclusions(case)
    for ingredient, card, suggestion in created_alternatives(advise(apps, profile, case)):
        if ingredient in excluded:
            med = (*case.active, *case.drafts)[0]
            where_from = "drafted" if case.drafts else "active"
            raise violated(
                f"Interacting {med.drug} missed",
                f"offers {ALTERNATIVES[ingredient]} with {med!r} {where_from} "
                f"({excluded[ingredient]}): {where(card, suggestion)}",
            )


def _never_removed(cards: list[dict[str, Any]], case: Case) -> None:
    for card, suggestion, action in actions(cards):
        if deletes_draft(action, case):
            raise violated(
                "EmergencyTherapyDeleted",
                f"suggests removing {case.route} diazepam (reason {case.reason}): "
                f"{where(card, suggestion)}",
            )


@by_profile
@INVARIANT
@given(case=emergency_cases)
def test_f0_3_seizure_and_emergency_therapy_is_never_removed(apps, profile, case):
    cards = advise(apps, profile, case)
    # R1: an injection or rescue product's own label lists only hypersensitivity and acute
    # narrow-angle glaucoma; the tablet list (myasthenia gravis, sleep apnea, hepatic failure)
    # is at most a warning there. Rescue products' minimum age (2 y) is left out. Checked first:
    # such a card usually carries the delete too, which would hide this finding.
    own_label_only = not case.oral and "diazepam" not in case.allergies and case.age_years >= 2
    if own_label_only and "critical" in topics(cards).get(CONTRA, []):
        raise violated(
            "TabletContraindicationOnNonOral",
            f"critical contraindication on a {case.route} order from the tablet label's list",
        )
    _never_removed(cards, case)


@by_profile
@INVARIANT
@given(case=non_oral_musculoskeletal_cases)
def test_f0_3_a_non_oral_order_is_never_removed_whatever_its_reason(apps, profile, case):
    _never_removed(advise(apps, profile, case), case)


@by_profile
@INVARIANT
@given(case=contraindicated_oral_cases())
def test_f0_4_inference_never_silences_a_contraindication(apps, profile, case):
    why = oral_contraindications(case)
    assert why  # by construction
    got = topics(advise(apps, profile, case)).get(CONTRA, [])
    assert "critical" in got, (
        f"oral diazepam with {', '.join(why)} (reason {case.reason}, "
        f"conditions {list(case.conditions)}): {CONTRA} {got or 'absent'}, expected critical"
    )


@by_profile
@INVARIANT
@given(case=with_opioid(pt.cases()))
def test_f0_4_an_opioid_is_always_warned_about(apps, profile, case):
    assert case.takes(pt.OPIOIDS)
    got = topics(advise(apps, profile, case))
    assert OPIOID in got, f"opioid {[m for m in (*case.active, *case.drafts)]} but no {OPIOID}"


@by_profile
@INVARIANT
@given(case=st.one_of(busy_cases, with_opioid(busy_cases)))
def test_f0_5_safety_topics_are_never_dropped(apps, profile, case):
    expected = expected_safety_topics(case)
    assume(expected)
    got = topics(advise(apps, profile, case))
    # One kind of failure per topic (substance-use-risk last: it is the one most often missing
    # today, and it would hide the others).
    for topic in (CONTRA, OPIOID, TAPER, BEERS, SUBSTANCE):
        if topic in expected and topic not in got:
            raise violated(
                f"Dropped {topic}",
                f"dropped {topic} ({expected[topic]}) among {len(got)} topics {sorted(got)}",
            )


@by_profile
@INVARIANT
@given(case=simple_spasm_cases)
def test_f0_6_a_long_supply_alone_is_never_critical(apps, profile, case):
    cards = advise(apps, profile, case)
    critical = [topic_of(c) for c in cards if c.get("indicator") == "critical"]
    if critical:
        raise violated(
            "CriticalForDurationAlone",
            f"{case.days_supply}-day supply with no other problem: critical {critical}",
        )


@by_profile
@INVARIANT
@given(case=typical_older_spasm_cases)
def test_f0_6_a_typical_older_adult_spasm_order_gets_at_most_three_cards(apps, profile, case):
    cards = advise(apps, profile, case)
    if len(cards) > 3:
        raise violated(
            "MoreThanThreeCards",
            f"typical older-adult acute-spasm order got {len(cards)} cards: "
            f"{[(topic_of(c), c.get('indicator')) for c in cards]}",
        )


@by_profile
@INVARIANT
@given(case=pt.cases(min_age_days=pt.years(18), products=pt.ORAL_PRODUCTS, reasons=("back-spasm",)))
def test_f0_7_baclofen_and_tizanidine_are_called_off_label_for_acute_spasm(apps, profile, case):
    for ingredient, card, suggestion in created_alternatives(advise(apps, profile, case)):
        if ingredient not in (BACLOFEN, TIZANIDINE):
            continue
        text = " ".join(str(x) for x in (suggestion.get("label"), card.get("detail"))).lower()
        assert "off-label" in text, (
            f"{ALTERNATIVES[ingredient]} for acute back spasm not called off-label: "
            f"{where(card, suggestion)}"
        )


@by_profile
@INVARIANT
@given(case=pt.cases())
def test_every_card_is_valid_cds_hooks(apps, profile, case):
    cards = advise(apps, profile, case)
    uuids = [c.get("uuid") for c in cards]
    assert len(set(uuids)) == len(uuids), "card uuids repeat"
    for card in cards:
        assert not card_problems(card), (topic_of(card), card_problems(card))
        if profile == "epic":
            for suggestion in card.get("suggestions") or []:
                kinds = [a.get("type") for a in suggestion.get("actions") or []]
                assert len(kinds) <= 1, f"epic: {len(kinds)} actions in {where(card, suggestion)}"
                assert "update" not in kinds, f"epic: update in {where(card, suggestion)}"


def test_the_generator_covers_the_pools():
    """Guard the generator: codes are unique and each pool drug has all three coding styles."""
    codes = [d.code for d in pt.DRUGS.values()]
    assert len(set(codes)) == len(codes)
    case = Case(
        age_days=pt.years(70),
        female=False,
        product="tab5",
        dose_mg=5,
        per_day=2,
        days_supply=30,
        reason=None,
        active=tuple(Med(d, s) for d, s in zip(pt.OTHER_DRUGS, pt.CODING_STYLES * 4, strict=False)),
        conditions=pt.CONDITION_KEYS,
        egfr=45,
        allergies=tuple(pt.ALLERGENS),
    )
    request = case.request()
    assert case.age_years == 70
    assert request["prefetch"]["medications"]["total"] == len(pt.OTHER_DRUGS)
    assert request["prefetch"]["conditions"]["total"] == len(pt.CONDITION_KEYS)
    styles = [
        e["resource"]["medicationCodeableConcept"]
        for e in request["prefetch"]["medications"]["entry"]
    ]
    assert any("text" not in s and "display" not in s["coding"][0] for s in styles)
    assert any("coding" not in s for s in styles)


@settings(INVARIANT, max_examples=15)
@given(case=pt.cases())
def test_generated_requests_are_valid_r4_hook_requests(case):
    """The generator's output is what an EHR could send: the service's own request schema, the
    prefetch keys it asks for, and every resource valid FHIR R4 (fhir.resources R4B models)."""
    request = case.request(7)
    validate_hook_request("order-sign", request)
    assert set(request["prefetch"]) == set(PREFETCH_TEMPLATES)
    resources = [request["prefetch"]["patient"]]
    for bundle in (request["context"]["draftOrders"], *list(request["prefetch"].values())[1:]):
        resources.append(bundle)
        resources.extend(entry["resource"] for entry in bundle.get("entry") or [])
    for resource in resources:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)
