"""R12: no indication on an oral diazepam order, or one only inferred from the problem list
off the acute-spasm path: ask for it to be documented (with a one-click reason)."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    chronic_diazepam,
    effective_route,
    indication,
    new_finding,
    pathway,
)
from cds_service.jsondata import copy_json


def indication_missing(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    found = indication(order, record, policy)
    path = pathway(order, record, policy)
    inferred = found.source == "condition" and found.kind != "acute_spasm"
    if path == "safety" or effective_route(order, policy) != "oral":
        return []
    if not inferred and (found.source != "none" or path != "acute"):
        return []
    options = []
    # a long-term user's order is rewritten only by the taper step (F.0-1): no second update
    chronic = chronic_diazepam(order, record, policy) is not None
    field = "reasonCode" if order.resource_type == "MedicationRequest" else "reasonCodeableConcept"
    for reason in [] if chronic else policy["indication_missing"]["suggested_reasons"]:
        resource = copy_json(order.raw)
        coding = {k: reason[k] for k in ("system", "code", "display") if k in reason}
        concept = {"coding": [coding], "text": reason["display"]}
        resource[field] = [concept] if field == "reasonCode" else concept
        options.append(
            Option(
                kind="update",
                label=f"Indication: {reason.get('label') or reason['display']} ({reason['code']})",
                description=f"Add the indication {reason['display']} to the diazepam order",
                resource=resource,
            )
        )
    return [
        new_finding(
            "indication-missing",
            policy["indication_missing"]["indicator"],
            order,
            record,
            variant="inferred" if inferred else "default",
            facts={"inferred": policy.kind_titles.get(found.kind, found.kind.replace("_", " "))},
            audit={
                "conditions_known": "conditions" not in record.unknown,
                "inferred": found.kind if inferred else None,
            },
            options=options,
        )
    ]
