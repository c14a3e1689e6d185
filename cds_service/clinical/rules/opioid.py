"""R2: opioid and benzodiazepine together (boxed warning; CDC 2022 Rec 11; Beers Table 5)."""

from __future__ import annotations

from typing import Any

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    active_classes,
    cancel_pended,
    chronic_diazepam,
    emergency_order,
    fmt,
    hospice,
    in_sentence,
    is_older,
    new_finding,
)

NASAL_ROUTE = {
    "coding": [{"system": "http://snomed.info/sct", "code": "46713006", "display": "Nasal route"}]
}


def opioid_benzodiazepine(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    rule = policy["opioid"]
    opioids = sorted(active_classes(record, rule["count_draft_opioids"]).get("opioid", set()))
    if not opioids:
        if "medications" in record.unknown and rule["unknown_indicator"] != "none":
            # silence would read as "no opioid": say the boxed-warning check was not done
            return [
                new_finding(
                    "opioid-benzodiazepine",
                    rule["unknown_indicator"],
                    order,
                    record,
                    variant="unchecked",
                    facts={},
                    audit={"opioids_checked": False},
                )
            ]
        return []
    if hospice(record):
        # R20 and CDC Rec 11's applicability (no limited life expectancy, end-of-life care or
        # terminal condition): comfort goals first. The boxed warning still holds, so the card
        # stays, at most info, with no cancel, no naloxone and no CDC source (review round 4 p14)
        return [
            new_finding(
                "opioid-benzodiazepine",
                rule["hospice_indicator"],
                order,
                record,
                variant="hospice",
                facts={"opioids": ", ".join(opioids)},
                audit={"opioids": opioids, "escalated": False, "hospice": True},
            )
        ]
    reasons = []
    if rule["escalate_if_age65"] and is_older(record, policy):
        reasons.append(f"age {record.age_years}")
    reasons += [
        in_sentence(policy.group_titles[g]) for g in rule["escalate_groups"] if record.has(g)
    ]
    indicator = rule["escalated_indicator"] if reasons else rule["indicator"]
    options = []
    # boxed warning, CDC 2022 Rec 11: avoid the combination. In a high-risk patient
    # cancelling the new diazepam is the recommended choice (review round 1 M1); a long-term
    # user is tapered instead (F.0-1), seizure therapy never removed (F.0-3)
    removable = not emergency_order(order, record, policy)
    if reasons and removable and chronic_diazepam(order, record, policy) is None:
        options.append(cancel_pended(order))
    has_naloxone = "naloxone" in active_classes(record, True)
    if rule["offer_naloxone"] and not has_naloxone:
        options.append(naloxone_option(order, rule["naloxone"]))
    found = new_finding(
        "opioid-benzodiazepine",
        indicator,
        order,
        record,
        variant="escalated" if reasons else "default",
        facts={"opioids": ", ".join(opioids), "why": "; ".join(reasons)},
        audit={
            "opioids": opioids,
            "escalated": bool(reasons),
            "naloxone_offered": bool(options),
        },
        options=options,
    )
    # the opioid-use-disorder reason fits only a patient on buprenorphine or methadone
    if not set(opioids) & set(rule["oud_opioids"]):
        found.unfit_reasons.add("oud-treatment")
    return [found]


def naloxone_option(order: DiazepamOrder, spec: dict[str, Any]) -> Option:
    """CDC 2022 Rec 8: offer naloxone when benzodiazepines are co-prescribed with opioids.
    A complete, ready-to-sign nasal-spray order (the product code comes from the CDC
    naloxone value set): the dose, route, repeat interval and the reason to use it are
    structured, the text says exactly that, and what to do besides is the patient
    instruction; one carton of two single-dose sprays."""
    low, high = spec["repeat_minutes"]
    # one spray is the dose; a repeat is a new device in the other nostril (review round 2
    # N4: "(2 sprays)" in the label was read as the dose)
    text = (
        f"1 spray ({fmt(spec['mg'])} mg) in one nostril as needed for {spec['as_needed_for']}; "
        f"if no response, repeat every {fmt(low)} to {fmt(high)} minutes with a new device "
        "in the other nostril"
    )
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {
                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                    "code": spec["code"],
                    "display": spec["display"],
                }
            ],
            "text": spec["display"],
        },
        "dosageInstruction": [
            {
                "text": text,
                "patientInstruction": spec["patient_instruction"],
                "timing": {
                    "repeat": {
                        "frequency": 1,
                        "period": low,
                        "periodMax": high,
                        "periodUnit": "min",
                    }
                },
                "asNeededCodeableConcept": {"text": spec["as_needed_for"]},
                "route": NASAL_ROUTE,
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": spec["mg"],
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
        "dispenseRequest": {
            "quantity": {
                "value": spec["quantity"],
                "unit": "nasal spray",
                "system": "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
                "code": "NASSPRY",
            },
            "numberOfRepeatsAllowed": 0,
        },
    }
    if order.subject:
        resource["subject"] = dict(order.subject)
    return Option(
        kind="create",
        label=spec["label"],
        description=f"Order {spec['display']}: {text}",
        resource=resource,
        recommended=True,
        code=spec["code"],
        drug=spec["display"].split()[0].lower(),
        sig=_sig(spec),
    )


def _sig(spec: dict[str, Any]) -> str | None:
    """'**Naloxone 4 mg nasal spray:** 1 spray in one nostril …, no refills.' (N4)."""
    if not spec.get("sig"):
        return None
    product, _, how = str(spec["sig"]).partition(": ")
    return f"**Naloxone {product}:** {how}."
