"""The services this deployment offers, and the FHIR queries it asks clients to prefetch.

One id per hook: the CDS Hooks sandbox keys services by id, so a shared id would collide.
Prefetch templates use only forms CDS Hooks 2.0 allows (instance read; type search with
reference, token equality and _count/_sort; tokens limited to context.patientId).
"""

from __future__ import annotations

from dataclasses import dataclass

# LOINC codes for kidney function (knowledge base D.4): eGFR variants, CrCl, serum creatinine.
KIDNEY_LOINC = (
    "98979-8",
    "98980-6",
    "62238-1",
    "94677-2",
    "50210-4",
    "69405-9",
    "77147-7",
    "33914-3",
    "76633-7",
    "48642-3",
    "48643-1",
    "88294-4",
    "88293-6",
    "50044-7",
    "70969-1",
    "2164-2",
    "2160-0",
)

PREFETCH_TEMPLATES: dict[str, str] = {
    "patient": "Patient/{{context.patientId}}",
    # stopped too: F.1 maoi_14d reads an MAOI stopped within 14 days (review case rv-27)
    "medications": "MedicationRequest?patient={{context.patientId}}&status=active,on-hold,stopped",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "observations": "Observation?patient={{context.patientId}}&code="
    + ",".join(f"http://loinc.org|{code}" for code in KIDNEY_LOINC)
    + "&_sort=-date&_count=50",
    "allergies": "AllergyIntolerance?patient={{context.patientId}}",
}

USAGE = (
    "Needs the patient (for age) from prefetch or from fhirServer; medications, conditions, "
    "kidney-function observations and allergies are used when available and the cards say what "
    "was not known. Accepts DSTU2 MedicationOrder and STU3/R4/R5 MedicationRequest drafts and "
    "answers in their FHIR version; a drug named by medicationReference to a Medication not in "
    "the request is read from fhirServer (grant Medication.read). Hook calls must carry a CDS "
    "Hooks JWT from a trusted issuer."
)


@dataclass(frozen=True)
class ServiceDefinition:
    id: str
    hook: str
    title: str
    description: str

    def to_json(self) -> dict[str, object]:
        return {
            "hook": self.hook,
            "id": self.id,
            "title": self.title,
            "description": self.description,
            "prefetch": dict(PREFETCH_TEMPLATES),
            "usageRequirements": USAGE,
        }


SERVICES: dict[str, ServiceDefinition] = {
    s.id: s
    for s in (
        ServiceDefinition(
            id="diazepam-order-select",
            hook="order-select",
            title="Diazepam: safer alternatives, duration and Beers check (order select)",
            description=(
                "When diazepam is selected, suggests a patient-fitted muscle relaxant "
                "(baclofen, tizanidine or cyclobenzaprine), caps short-term duration and flags "
                "AGS Beers Criteria 2023 risks and label contraindications."
            ),
        ),
        ServiceDefinition(
            id="diazepam-order-sign",
            hook="order-sign",
            title="Diazepam: safety check at signing (order sign)",
            description=(
                "Re-checks every diazepam order being signed: contraindications, opioid "
                "co-prescription, AGS Beers Criteria 2023, dose and duration, with one-click "
                "alternatives."
            ),
        ),
    )
}


def discovery_document() -> dict[str, object]:
    return {"services": [s.to_json() for s in SERVICES.values()]}
