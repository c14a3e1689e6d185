"""Plain data passed between the engine's stages: order, patient, findings.

Dataclasses and nothing else, so every stage can be built and tested without Flask or FHIR
models; the raw FHIR JSON travels along only where a suggestion must rewrite it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

# the option kinds that act on the pended diazepam order itself (F.2a: they sit on one card)
DRAFT_KINDS = ("replace", "update", "delete")
# CDS Hooks 2.0: a card summary is "<140 characters"
SUMMARY_MAX = 139
# the several-orders card's ``keeper`` when no pended order may be removed with one tick
# (every one needs a typed edit, or only the dose taken may be left): Epic gets no Remove
KEEP_ALL = "*"


@dataclass(frozen=True)
class Coding:
    system: str | None
    code: str
    display: str | None = None


@dataclass
class DiazepamOrder:
    """What the rules need to know about one diazepam draft, with the raw resource kept."""

    ref: str  # "MedicationRequest/abc" (the id a delete/update action names)
    resource_type: str
    raw: dict[str, Any]
    order_date: date
    matched_by: str  # "code" | "ingredient" | "text"
    code: str | None = None
    display: str | None = None
    route: str = "unknown"  # oral | parenteral | rectal | nasal | buccal | unknown
    route_source: str | None = None  # "product" | "dosage" | "text"
    unit: str | None = None  # product unit: tablet, mL, spray, film, suppository
    mg_per_unit: float | None = None
    mg_per_ml: float | None = None
    mg_per_dose: float | None = None
    units_per_dose: float | None = None  # in the product unit (tablets, mL)
    doses_per_day: float | None = None
    mg_per_day: float | None = None
    prn: bool = False
    quantity: float | None = None
    quantity_unit: str | None = None
    repeats: int = 0
    days_supply: float | None = None
    days_source: str | None = None  # expectedSupplyDuration | quantity | bounds
    reason_codings: tuple[Coding, ...] = ()
    reason_text: str | None = None
    reason_groups: frozenset[str] = frozenset()
    reason_references: tuple[str, ...] = ()
    subject: dict[str, Any] | None = None
    # whether the draft validates as an R4 MedicationRequest (None: another resource type);
    # recorded with each issued card so integration teams can see which EHR drafts were partial
    fhir_valid: bool | None = None


@dataclass(frozen=True)
class MedicationUse:
    """One active (or recently stopped) medication of the patient, classified by code."""

    ref: str | None
    ingredients: frozenset[str]
    classes: frozenset[str]
    status: str | None
    start: date | None = None
    end: date | None = None
    display: str | None = None
    # a running diazepam prescription's oral dose (read like a pended order's): what a long-term
    # user takes now, so a pended order can be told apart as a taper step (review round 6 M-3)
    mg_per_dose: float | None = None
    doses_per_day: float | None = None
    as_needed: bool = False  # its dose says the most that may be taken, not what is (round 7)
    route: str | None = None  # a diazepam order's route: a rescue gel is no duplicate of tablets


@dataclass(frozen=True)
class LabValue:
    kind: str  # egfr | crcl | creatinine
    value: float
    unit: str | None
    when: date | None
    code: str


@dataclass
class PatientRecord:
    """The patient as the rules see it; ``unknown`` names what could not be obtained."""

    age_years: int | None = None
    age_months: int | None = None
    medications: list[MedicationUse] = field(default_factory=list)
    recently_stopped: list[MedicationUse] = field(default_factory=list)
    draft_medications: list[MedicationUse] = field(default_factory=list)
    conditions: dict[str, date | None] = field(default_factory=dict)  # group -> onset/recorded
    condition_codes: dict[str, list[str]] = field(default_factory=dict)  # group -> codes
    condition_refs: dict[str, frozenset[str]] = field(default_factory=dict)  # Condition/id→
    egfr: LabValue | None = None
    crcl: LabValue | None = None
    allergies: frozenset[str] = frozenset()  # ingredient names (and "benzodiazepine" class)
    unknown: frozenset[str] = frozenset()  # patient, medications, conditions, observations, …

    def has(self, group: str) -> bool:
        return group in self.conditions

    def classes(self) -> frozenset[str]:
        out: set[str] = set()
        for med in self.medications:
            out |= med.classes
        return frozenset(out)


@dataclass(frozen=True)
class Indication:
    kind: str  # seizure | tetanus | alcohol_withdrawal | … | acute_spasm | unknown
    source: str  # reason | route | condition | none
    groups: frozenset[str] = frozenset()


@dataclass
class Option:
    """A change a card proposes, before it is shaped for an EHR profile (suggestions.py)."""

    kind: str  # replace | update | delete | create (a new order beside diazepam: naloxone)
    label: str
    description: str
    resource: dict[str, Any] | None = None
    recommended: bool = False
    code: str | None = None  # RxNorm code offered (audit)
    # the ingredient a replacement or addition orders: the dashboard's "which suggestion was
    # taken" (audit) and the decision summary; None for a change of the pended order itself
    drug: str | None = None
    # the label where a replacement is split into its actions (epic): an addition
    add_label: str | None = None
    # lines the card offering this option must carry (a caution): they travel with it when
    # the option moves to another card (compose.one_decision)
    notes: list[str] = field(default_factory=list)
    # a "keep" whose dose is above the older-adult start says so when the dose card fires
    # (review round 1 M5): the label used then
    label_above_start: str | None = None
    # the whole change in words where a profile edits by hand (Epic): the label is capped at
    # 80 characters, an edit instruction must not lose the days, amount or refills (M4)
    edit_text: str | None = None
    # the product a rewrite orders when it is not the pended order's own strength and form
    # ("diazepam 2 mg tablets"): an edit typed by hand names it first (review round 3)
    product: str | None = None
    # the pended diazepam orders this option removes, as (reference, words), when it is not
    # just the card's own order (several pended orders, review round 1 H1)
    removes: list[tuple[str, str]] | None = None
    # a cancel offered as a choice of its own (N2): what the patient gets instead of any
    # drug ("non-drug care and acetaminophen first"), said in its label and in a cancel-all
    instead: str | None = None
    # the whole order as a prescriber types it (dose, route, timing, as needed and maximum,
    # days, quantity, refills) where the EHR does not apply a created order's details (Epic,
    # review round 2 N4): a line of the card that offers it
    sig: str | None = None
    # a same-dose rewrite to a longer supply (F.0-1: no long-term user's supply under 14
    # days), not a taper step: the several-orders card extends what it keeps instead
    extends: bool = False


@dataclass
class Finding:
    """One distinct problem with one order; rendered into exactly one card."""

    topic: str
    indicator: str
    order_ref: str
    variant: str = "default"
    facts: dict[str, Any] = field(default_factory=dict)
    # facts said otherwise where an added order is typed out in full (Epic, N4): what its
    # typed line already says is not said again beside the drug (review round 4)
    typed_facts: dict[str, Any] = field(default_factory=dict)
    audit: dict[str, Any] = field(default_factory=dict)
    options: list[Option] = field(default_factory=list)
    unknowns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # paragraphs added by the engine (compose)
    # set by the engine when the card's own summary would contradict the decision it now
    # carries (a cancel recommended over the alternatives; several pended orders)
    summary_override: str | None = None
    # override reasons of the template that do not fit this patient (review round 1 L4:
    # "buprenorphine/methadone for OUD" for a hydrocodone patient): left off the card
    unfit_reasons: set[str] = field(default_factory=set)
    lead_notes: list[str] = field(default_factory=list)  # paragraphs before the card's text
