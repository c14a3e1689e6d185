"""Generated diazepam ``order-sign`` requests for the F.0 safety-invariant property tests.

A :class:`Case` is the clinical content of one request (age, the diazepam draft, active
medications, other drafts, conditions, eGFR, allergies). The tests' oracle reads these facts,
never the JSON, so the oracle and the request cannot disagree about what the patient has;
:meth:`Case.request` renders the facts as a CDS Hooks 2.0 request with R4 resources shaped like
``fixtures/scenarios/*.json`` (prefetch keys ``patient, medications, conditions, observations,
allergies``).

Codes come from the knowledge base section D unless a comment names another source. Codes
outside section D were read from public value-set expansions:
- canvas-medical/canvas-plugins ``canvas_sdk/value_set/v2026/medication.py`` (VSAC eCQM
  expansions, "eCQM Update 2025-05-08"): ciprofloxacin 500 MG Oral Tablet 309309, fluvoxamine
  maleate 50 MG Oral Tablet 903891 (VSAC Antidepressants 2.16.840.1.113762.1.4.1248.163),
  phenelzine 15 MG Oral Tablet 312347, gabapentin 300 MG Oral Capsule 310431.
- the CDC value sets under ``clinical/valuesets/`` (cqframework/opioid-cds-r4@b29bdcbf):
  zolpidem tartrate 10 MG Oral Tablet 854873 (cns-depressant-medications), hospice finding
  SNOMED 170935008 "Full care by hospice" (hospice-finding), and the opioid products (D.3).
- ICD-10-CM codes not in D.5 (I50.9, I44.2, E05.90, I21.9) are standard, long-stable
  ICD-10-CM codes (CMS code files); they sit in the VSAC heart-failure / AV-block /
  hyperthyroidism / MI value sets D.5 names.
- Status epilepticus is SNOMED 230456007 with ICD-10-CM G40.901 (D.5). ``G41.9`` is WHO ICD-10,
  not ICD-10-CM (which has no G41), so it is not used.
- SNOMED route codes (26643006 oral, 47625008 IV, 78421000 IM, 37161004 rectal, 46713006 nasal,
  54471007 buccal) are the SNOMED CT route-of-administration concepts used by FHIR R4's
  RouteCodes example value set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from hypothesis import strategies as st

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
BASE = "http://fhir.example.org/r4"

ORDER_DATE = date(2026, 3, 2)
DAYS_PER_YEAR = 365.2425

# --- the diazepam draft (knowledge base D.1) ------------------------------------------------


@dataclass(frozen=True)
class Product:
    key: str
    code: str
    display: str
    route: str  # oral | parenteral | rectal | nasal | buccal
    mg_per_unit: float  # mg in one tablet / one rescue dose / one mL (injection)


DIAZEPAM_PRODUCTS: dict[str, Product] = {
    p.key: p
    for p in (
        Product("tab2", "197590", "diazepam 2 MG Oral Tablet", "oral", 2),
        Product("tab5", "197591", "diazepam 5 MG Oral Tablet", "oral", 5),
        Product("tab10", "197589", "diazepam 10 MG Oral Tablet", "oral", 10),
        Product("inj", "309845", "diazepam 5 MG/ML Injectable Solution", "parenteral", 5),
        Product("rectal", "801961", "2 ML diazepam 5 MG/ML Rectal Gel", "rectal", 10),
        Product("nasal", "2272613", "diazepam 100 MG/ML Nasal Spray", "nasal", 10),
        Product("buccal", "2682564", "diazepam 5 MG Buccal Film", "buccal", 5),
    )
}
ORAL_PRODUCTS = ("tab2", "tab5", "tab10")
NON_ORAL_PRODUCTS = ("inj", "rectal", "nasal", "buccal")
TABLET_MG = {DIAZEPAM_PRODUCTS[k].code: DIAZEPAM_PRODUCTS[k].mg_per_unit for k in ORAL_PRODUCTS}

ROUTES = {
    "oral": ("26643006", "Oral route"),
    "iv": ("47625008", "Intravenous route"),
    "im": ("78421000", "Intramuscular route"),
    "rectal": ("37161004", "Rectal route"),
    "nasal": ("46713006", "Nasal route"),
    "buccal": ("54471007", "Buccal route"),
}

# The order's reasonCode (a *stated* indication). None = no reasonCode.
REASONS: dict[str, list[tuple[str, str, str]]] = {
    "back-spasm": [(ICD10CM, "M62.830", "Muscle spasm of back")],
    "epilepsy": [
        (ICD10CM, "G40.909", "Epilepsy, unspecified, not intractable, without status epilepticus")
    ],
    "convulsions": [(ICD10CM, "R56.9", "Unspecified convulsions")],
    "status-epilepticus": [
        (SNOMED, "230456007", "Status epilepticus"),
        (ICD10CM, "G40.901", "Epilepsy, unspecified, not intractable, with status epilepticus"),
    ],
    "alcohol-withdrawal": [(ICD10CM, "F10.239", "Alcohol dependence with withdrawal, unspecified")],
    "gad": [(ICD10CM, "F41.1", "Generalized anxiety disorder")],
    "ms-spasticity": [(ICD10CM, "G35", "Multiple sclerosis")],
    "cp-spasticity": [(ICD10CM, "G80.9", "Cerebral palsy, unspecified")],
}
SEIZURE_REASONS = frozenset({"epilepsy", "convulsions", "status-epilepticus"})
EMERGENCY_REASONS = SEIZURE_REASONS | {"alcohol-withdrawal"}  # F.0-3 (tetanus not generated)
SPASTICITY_REASONS = frozenset({"ms-spasticity", "cp-spasticity"})

# --- other medications (active or drafted) ---------------------------------------------------


@dataclass(frozen=True)
class Drug:
    key: str
    code: str  # an RxNorm product (SCD)
    display: str
    text: str  # what a text-only order says


DRUGS: dict[str, Drug] = {
    d.key: d
    for d in (
        Drug("diazepam", "197591", "diazepam 5 MG Oral Tablet", "diazepam 5 mg tablet"),
        Drug("baclofen", "197391", "baclofen 10 MG Oral Tablet", "baclofen 10 mg tablet"),
        Drug(
            "tizanidine",
            "313413",
            "tizanidine 4 MG Oral Tablet",
            "tizanidine 4 mg tablet",
        ),
        Drug(
            "cyclobenzaprine",
            "828348",
            "cyclobenzaprine hydrochloride 10 MG Oral Tablet",
            "cyclobenzaprine 10 mg tablet",
        ),
        Drug(
            "ciprofloxacin",
            "309309",
            "ciprofloxacin 500 MG Oral Tablet",
            "ciprofloxacin 500 mg tablet",
        ),
        Drug(
            "fluvoxamine",
            "903891",
            "fluvoxamine maleate 50 MG Oral Tablet",
            "fluvoxamine 50 mg tablet",
        ),
        # an MAOI
        Drug("phenelzine", "312347", "phenelzine 15 MG Oral Tablet", "phenelzine 15 mg"),
        Drug(
            "oxycodone",
            "1049621",
            "oxycodone hydrochloride 5 MG Oral Tablet",
            "oxycodone 5 mg tablet",
        ),
        Drug(
            "hydrocodone",
            "857002",
            "acetaminophen 325 MG / hydrocodone bitartrate 5 MG Oral Tablet",
            "hydrocodone 5 mg / acetaminophen 325 mg tablet",
        ),
        Drug(
            "tramadol",
            "835603",
            "tramadol hydrochloride 50 MG Oral Tablet",
            "tramadol 50 mg tablet",
        ),
        Drug(
            "gabapentin",
            "310431",
            "gabapentin 300 MG Oral Capsule",
            "gabapentin 300 mg capsule",
        ),
        Drug(
            "zolpidem",
            "854873",
            "zolpidem tartrate 10 MG Oral Tablet",
            "zolpidem 10 mg tablet",
        ),
    )
}
OPIOIDS = frozenset({"oxycodone", "hydrocodone", "tramadol"})
MAOIS = frozenset({"phenelzine"})
CYP1A2_STRONG = frozenset({"ciprofloxacin", "fluvoxamine"})
ALTERNATIVE_DRUGS = {"baclofen": "1292", "tizanidine": "57258", "cyclobenzaprine": "21949"}
CODING_STYLES = ("coded", "code-only", "text-only")
OTHER_DRUGS = tuple(k for k in DRUGS if k != "diazepam")

# --- conditions --------------------------------------------------------------------------------

CONDITIONS: dict[str, list[tuple[str, str, str]]] = {
    "myasthenia-gravis": [
        (ICD10CM, "G70.00", "Myasthenia gravis without (acute) exacerbation"),
    ],
    "sleep-apnea": [
        (ICD10CM, "G47.33", "Obstructive sleep apnea (adult) (pediatric)"),
        (SNOMED, "78275009", "Obstructive sleep apnea syndrome"),
    ],
    "alcoholic-hepatic-failure": [(ICD10CM, "K70.40", "Alcoholic hepatic failure without coma")],
    "cirrhosis": [
        (ICD10CM, "K74.60", "Unspecified cirrhosis of liver"),
        (SNOMED, "19943007", "Cirrhosis of liver"),
    ],
    "heart-failure": [(ICD10CM, "I50.9", "Heart failure, unspecified")],
    "av-block": [(ICD10CM, "I44.2", "Atrioventricular block, complete")],
    "hyperthyroidism": [
        (ICD10CM, "E05.90", "Thyrotoxicosis, unspecified without thyrotoxic crisis or storm")
    ],
    "recent-mi": [(ICD10CM, "I21.9", "Acute myocardial infarction, unspecified")],
    "falls-history": [(ICD10CM, "Z91.81", "History of falling")],
    "dementia": [
        (ICD10CM, "F03.90", "Unspecified dementia without behavioral disturbance"),
        (SNOMED, "52448006", "Dementia"),
    ],
    "copd": [(ICD10CM, "J44.9", "Chronic obstructive pulmonary disease, unspecified")],
    "alcohol-use-disorder": [
        (ICD10CM, "F10.20", "Alcohol dependence, uncomplicated"),
        (SNOMED, "7200002", "Alcoholism"),
    ],
    "pregnancy": [
        (ICD10CM, "Z33.1", "Pregnant state, incidental"),
        (SNOMED, "77386006", "Pregnant"),
    ],
    "seizure-history": [(ICD10CM, "R56.9", "Unspecified convulsions")],
    "stiff-man": [(ICD10CM, "G25.82", "Stiff-man syndrome")],
    "multiple-sclerosis": [(ICD10CM, "G35", "Multiple sclerosis")],
    "hospice": [(SNOMED, "170935008", "Full care by hospice")],
}
CONDITION_KEYS = tuple(CONDITIONS)
ONSET_DAYS_AGO = {
    "seizure-history": (ORDER_DATE - date(2001, 5, 10)).days,  # "R56.9 from 2001" (issue 14)
    "pregnancy": 70,
    "hospice": 20,
}
DEFAULT_ONSET_DAYS_AGO = 800
ALLERGENS = {
    "baclofen": ("1292", "baclofen"),
    "tizanidine": ("57258", "tizanidine"),
    "cyclobenzaprine": ("21949", "cyclobenzaprine"),
    "diazepam": ("3322", "diazepam"),
}

# --- the case -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Med:
    drug: str
    style: str  # coded | code-only | text-only
    authored_days_ago: int = 10
    validity_start_days_ago: int | None = None

    def __repr__(self) -> str:
        out = f"{self.drug}[{self.style}]"
        if self.drug == "diazepam":
            out += f"(authored -{self.authored_days_ago}d"
            if self.validity_start_days_ago is not None:
                out += f", validity -{self.validity_start_days_ago}d"
            out += ")"
        return out


@dataclass(frozen=True)
class Case:
    age_days: int
    female: bool
    product: str
    dose_mg: float
    per_day: int
    days_supply: int
    reason: str | None
    active: tuple[Med, ...] = ()
    drafts: tuple[Med, ...] = ()
    conditions: tuple[str, ...] = ()
    mi_days_ago: int = 10
    egfr: int | None = None
    allergies: tuple[str, ...] = ()
    iv: bool = True  # parenteral route: IV (else IM)
    draft_id: str = field(default="inv-diazepam", repr=False)

    def __repr__(self) -> str:
        years = self.age_days / DAYS_PER_YEAR
        parts = [
            f"age={self.age_days}d (~{years:.1f} y)",
            f"diazepam={self.product} {self.dose_mg:g} mg x{self.per_day}/d {self.days_supply}d",
            f"reason={self.reason}",
        ]
        if self.product == "inj":
            parts.append("IV" if self.iv else "IM")
        if self.active:
            parts.append(f"active={list(self.active)}")
        if self.drafts:
            parts.append(f"drafts={list(self.drafts)}")
        if self.conditions:
            parts.append(f"conditions={list(self.conditions)}")
        if "recent-mi" in self.conditions:
            parts.append(f"mi=-{self.mi_days_ago}d")
        if self.egfr is not None:
            parts.append(f"egfr={self.egfr}")
        if self.allergies:
            parts.append(f"allergies={list(self.allergies)}")
        return "Case(" + ", ".join(parts) + ")"

    # --- facts the oracle reads ---------------------------------------------------------------

    @property
    def birth_date(self) -> date:
        return ORDER_DATE - timedelta(days=self.age_days)

    @property
    def age_years(self) -> int:
        born = self.birth_date
        before = (ORDER_DATE.month, ORDER_DATE.day) < (born.month, born.day)
        return ORDER_DATE.year - born.year - int(before)

    @property
    def route(self) -> str:
        return DIAZEPAM_PRODUCTS[self.product].route

    @property
    def oral(self) -> bool:
        return self.route == "oral"

    @property
    def daily_mg(self) -> float:
        return self.dose_mg * self.per_day

    def has(self, condition: str) -> bool:
        return condition in self.conditions

    def takes(self, drugs: frozenset[str] | set[str] | str) -> bool:
        """Active or drafted in the same request (F.1 'interacting drugs')."""
        wanted = {drugs} if isinstance(drugs, str) else set(drugs)
        return any(m.drug in wanted for m in (*self.active, *self.drafts))

    @property
    def running_diazepam(self) -> Med | None:
        return next((m for m in self.active if m.drug == "diazepam"), None)

    @property
    def chronic_days(self) -> int | None:
        """Days since the running diazepam Rx started (earliest of authoredOn/validity start)."""
        med = self.running_diazepam
        if med is None:
            return None
        starts = [med.authored_days_ago]
        if med.validity_start_days_ago is not None:
            starts.append(med.validity_start_days_ago)
        return max(starts)

    # --- the request ----------------------------------------------------------------------------

    def request(self, serial: int = 0) -> dict[str, Any]:
        pid = f"inv-{serial}"
        subject = {"reference": f"Patient/{pid}"}
        drafts = [self._diazepam_draft(subject)] + [
            _med_request(m, f"draft-{i}", subject, status="draft")
            for i, m in enumerate(self.drafts)
        ]
        active = [
            _med_request(m, f"med-{i}", subject, status="active", dose=self._running_dose(m))
            for i, m in enumerate(self.active)
        ]
        conditions = [self._condition(key, i, subject) for i, key in enumerate(self.conditions)]
        observations = [] if self.egfr is None else [_egfr(self.egfr, subject)]
        allergies = [_allergy(name, i, subject) for i, name in enumerate(self.allergies)]
        return {
            "hookInstance": f"00000000-0000-4000-8000-{serial:012d}",
            "hook": "order-sign",
            "context": {
                "userId": "Practitioner/inv-prescriber",
                "patientId": pid,
                "draftOrders": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [_entry(r) for r in drafts],
                },
            },
            "prefetch": {
                "patient": {
                    "resourceType": "Patient",
                    "id": pid,
                    "active": True,
                    "gender": "female" if self.female else "male",
                    "birthDate": self.birth_date.isoformat(),
                },
                "medications": _bundle(active),
                "conditions": _bundle(conditions),
                "observations": _bundle(observations),
                "allergies": _bundle(allergies),
            },
        }

    def _running_dose(self, med: Med) -> tuple[float, int]:
        if med.drug == "diazepam" and self.oral:
            return self.dose_mg, self.per_day  # the draft renews the running Rx unchanged
        return (5, 2) if med.drug == "diazepam" else (1, 1)

    def _diazepam_draft(self, subject: dict[str, str]) -> dict[str, Any]:
        product = DIAZEPAM_PRODUCTS[self.product]
        route_key = {"parenteral": "iv" if self.iv else "im"}.get(product.route, product.route)
        code, display = ROUTES[route_key]
        dosage: dict[str, Any] = {
            "sequence": 1,
            "timing": {"repeat": {"frequency": self.per_day, "period": 1, "periodUnit": "d"}},
            "route": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
            "doseAndRate": [{"doseQuantity": _mg(self.dose_mg)}],
        }
        if product.route in ("rectal", "nasal", "buccal"):
            dosage["asNeededBoolean"] = True
        dispense: dict[str, Any] = {
            "expectedSupplyDuration": {
                "value": self.days_supply,
                "unit": "days",
                "system": UCUM,
                "code": "d",
            },
            "numberOfRepeatsAllowed": 0,
        }
        if product.route == "oral":
            tablets = round(self.dose_mg / product.mg_per_unit * self.per_day * self.days_supply)
            dispense["quantity"] = {
                "value": tablets,
                "unit": "tablet",
                "system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
                "code": "TAB",
            }
        resource: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self.draft_id,
            "status": "draft",
            "intent": "order",
            "medicationCodeableConcept": {
                "coding": [{"system": RXNORM, "code": product.code, "display": product.display}],
                "text": product.display,
            },
            "subject": subject,
            "authoredOn": ORDER_DATE.isoformat(),
            "requester": {"reference": "Practitioner/inv-prescriber"},
            "dosageInstruction": [dosage],
            "dispenseRequest": dispense,
        }
        if self.reason is not None:
            resource["reasonCode"] = [_concept(REASONS[self.reason])]
        return resource

    def _condition(self, key: str, i: int, subject: dict[str, str]) -> dict[str, Any]:
        days_ago = (
            self.mi_days_ago
            if key == "recent-mi"
            else ONSET_DAYS_AGO.get(key, DEFAULT_ONSET_DAYS_AGO)
        )
        onset = (ORDER_DATE - timedelta(days=days_ago)).isoformat()
        return {
            "resourceType": "Condition",
            "id": f"cond-{i}",
            "clinicalStatus": _concept(
                [("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active")]
            ),
            "verificationStatus": _concept(
                [
                    (
                        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "confirmed",
                        "Confirmed",
                    )
                ]
            ),
            "category": [
                _concept(
                    [
                        (
                            "http://terminology.hl7.org/CodeSystem/condition-category",
                            "problem-list-item",
                            "Problem List Item",
                        )
                    ]
                )
            ],
            "code": _concept(CONDITIONS[key]),
            "subject": subject,
            "onsetDateTime": onset,
            "recordedDate": onset,
        }


def _concept(codings: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {"coding": [{"system": s, "code": c, "display": d} for s, c, d in codings]}


def _mg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def _entry(resource: dict[str, Any]) -> dict[str, Any]:
    return {"fullUrl": f"{BASE}/{resource['resourceType']}/{resource['id']}", "resource": resource}


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
    }
    if resources:
        bundle["entry"] = [{**_entry(r), "search": {"mode": "match"}} for r in resources]
    return bundle


def _medication(drug: Drug, style: str) -> dict[str, Any]:
    if style == "coded":
        return {
            "coding": [{"system": RXNORM, "code": drug.code, "display": drug.display}],
            "text": drug.display,
        }
    if style == "code-only":
        return {"coding": [{"system": RXNORM, "code": drug.code}]}
    return {"text": drug.text}


def _med_request(
    med: Med,
    rid: str,
    subject: dict[str, str],
    *,
    status: str,
    dose: tuple[float, int] = (1, 1),
) -> dict[str, Any]:
    drug = DRUGS[med.drug]
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": _medication(drug, med.style),
        "subject": subject,
        "authoredOn": (
            ORDER_DATE if status == "draft" else ORDER_DATE - timedelta(days=med.authored_days_ago)
        ).isoformat(),
    }
    if med.drug == "diazepam":
        mg, per_day = dose
        resource["dosageInstruction"] = [
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": _mg(mg)}],
            }
        ]
        if med.validity_start_days_ago is not None:
            start = ORDER_DATE - timedelta(days=med.validity_start_days_ago)
            resource["dispenseRequest"] = {"validityPeriod": {"start": start.isoformat()}}
    else:
        resource["dosageInstruction"] = [{"text": "as directed"}]
    return resource


def _egfr(value: int, subject: dict[str, str]) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "obs-egfr",
        "status": "final",
        "category": [
            _concept(
                [
                    (
                        "http://terminology.hl7.org/CodeSystem/observation-category",
                        "laboratory",
                        "Laboratory",
                    )
                ]
            )
        ],
        "code": _concept(
            [
                (
                    LOINC,
                    "98979-8",
                    "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum, "
                    "Plasma or Blood by Creatinine-based formula (CKD-EPI 2021)",
                )
            ]
        ),
        "subject": subject,
        "effectiveDateTime": (ORDER_DATE - timedelta(days=20)).isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": "mL/min/{1.73_m2}",
            "system": UCUM,
            "code": "mL/min/{1.73_m2}",
        },
    }


def _allergy(name: str, i: int, subject: dict[str, str]) -> dict[str, Any]:
    code, display = ALLERGENS[name]
    return {
        "resourceType": "AllergyIntolerance",
        "id": f"allergy-{i}",
        "clinicalStatus": _concept(
            [
                (
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
                    "active",
                    "Active",
                )
            ]
        ),
        "verificationStatus": _concept(
            [
                (
                    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
                    "confirmed",
                    "Confirmed",
                )
            ]
        ),
        "type": "allergy",
        "category": ["medication"],
        "criticality": "high",
        "code": {"coding": [{"system": RXNORM, "code": code, "display": display}], "text": display},
        "patient": subject,
        "recordedDate": "2019-04-02",
    }


# --- strategies -------------------------------------------------------------------------------

MIN_AGE_DAYS = 91  # 3 months
MAX_AGE_DAYS = int(100 * DAYS_PER_YEAR)


def years(n: float) -> int:
    """Age in days that is certainly at least n years on the order date."""
    return int(n * DAYS_PER_YEAR) + 2


def meds(
    drugs: tuple[str, ...], *, max_size: int = 3, min_size: int = 0
) -> st.SearchStrategy[tuple[Med, ...]]:
    if not drugs or max_size == 0:
        return st.just(())
    one = st.builds(Med, drug=st.sampled_from(drugs), style=st.sampled_from(CODING_STYLES))
    return st.lists(one, min_size=min_size, max_size=max_size, unique_by=lambda m: m.drug).map(
        tuple
    )


def running_diazepam(*, chronic: bool | None = None) -> st.SearchStrategy[Med]:
    """A running diazepam Rx started 2–400 days before the order (earliest of authoredOn and
    validityPeriod.start). chronic=True forces ≥ 28 days, False forces < 28."""
    lo, hi = {True: (28, 400), False: (2, 27), None: (2, 400)}[chronic]

    @st.composite
    def _draw(draw: st.DrawFn) -> Med:
        earliest = draw(st.integers(lo, hi), label="earliest start, days before the order")
        other = draw(st.none() | st.integers(1, earliest), label="the other start date")
        # Either date may be the earliest one: a recent renewal with an old validity start, or
        # the reverse.
        authored, validity = draw(st.sampled_from([(earliest, other), (other, earliest)]))
        if authored is None:
            authored, validity = earliest, None
        return Med(
            "diazepam",
            draw(st.sampled_from(CODING_STYLES)),
            authored_days_ago=authored,
            validity_start_days_ago=validity,
        )

    return _draw()


@st.composite
def cases(
    draw: st.DrawFn,
    *,
    min_age_days: int = MIN_AGE_DAYS,
    max_age_days: int = MAX_AGE_DAYS,
    products: tuple[str, ...] = tuple(DIAZEPAM_PRODUCTS),
    reasons: tuple[str | None, ...] = (None, *REASONS),
    chronic: bool | None = None,
    active_drugs: tuple[str, ...] = OTHER_DRUGS,
    draft_drugs: tuple[str, ...] = OTHER_DRUGS,
    conditions: tuple[str, ...] = CONDITION_KEYS,
    required_conditions: tuple[str, ...] = (),
    max_conditions: int = 4,
    max_meds: int = 3,
    allergies: tuple[str, ...] = tuple(ALLERGENS),
    egfr: bool | tuple[int, int] = True,  # False: none; (lo, hi): always one in that range
    min_days: int = 1,
) -> Case:
    """One whole patient. ``chronic``: None = a running diazepam Rx may or may not be there;
    True = there is one started ≥ 28 days before the order; False = none at all."""
    # Drawn as an offset from a 40-year-old so that failures shrink to an ordinary adult, not
    # to the youngest patient allowed.
    anchor = min(max(years(40), min_age_days), max_age_days)
    offset = draw(
        st.integers(min_age_days - anchor, max_age_days - anchor), label="age offset from 40 y"
    )
    age_days = anchor + offset
    product = draw(st.sampled_from(products), label="diazepam product")
    spec = DIAZEPAM_PRODUCTS[product]
    if spec.route == "oral":
        dose = spec.mg_per_unit
        per_day = draw(st.integers(1, 4), label="doses a day")
    elif spec.route == "parenteral":
        dose = draw(st.sampled_from([5, 10]))
        per_day = draw(st.integers(1, 4), label="doses a day")
    else:
        dose, per_day = spec.mg_per_unit, 1
    days_supply = draw(st.integers(min_days, 90), label="days supply")
    reason = draw(st.sampled_from(reasons), label="reasonCode")

    active = list(draw(meds(active_drugs, max_size=max_meds), label="active meds"))
    if chronic is True or (chronic is None and draw(st.booleans(), label="running diazepam")):
        active.insert(0, draw(running_diazepam(chronic=True if chronic else None)))
    drafts = draw(meds(draft_drugs, max_size=max_meds), label="other drafts")

    picked = (
        draw(
            st.lists(st.sampled_from(conditions), max_size=max_conditions, unique=True),
            label="conditions",
        )
        if conditions
        else []
    )
    chosen = tuple(dict.fromkeys((*required_conditions, *picked)))
    years_old = age_days / DAYS_PER_YEAR
    female = draw(st.booleans(), label="female")
    if "pregnancy" in chosen:
        if 14 <= years_old <= 50:
            female = True
        else:
            chosen = tuple(c for c in chosen if c != "pregnancy")
    mi_days = draw(st.integers(3, 25), label="MI days ago") if "recent-mi" in chosen else 10
    if isinstance(egfr, tuple):
        egfr_value = draw(st.integers(*egfr), label="eGFR")
    else:
        egfr_value = draw(st.none() | st.integers(10, 120), label="eGFR") if egfr else None
    allergy = draw(
        st.lists(st.sampled_from(allergies), max_size=2, unique=True) if allergies else st.just([]),
        label="allergies",
    )
    return Case(
        age_days=age_days,
        female=female,
        product=product,
        dose_mg=dose,
        per_day=per_day,
        days_supply=days_supply,
        reason=reason,
        active=tuple(active),
        drafts=tuple(drafts),
        conditions=chosen,
        mi_days_ago=mi_days,
        egfr=egfr_value,
        allergies=tuple(allergy),
        iv=draw(st.booleans(), label="IV (else IM)") if spec.route == "parenteral" else True,
    )
