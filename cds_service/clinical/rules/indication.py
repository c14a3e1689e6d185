"""R12: no indication on an oral diazepam order: ask for one (with a one-click reason)."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, Option, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import indication, new_finding, pathway
from cds_service.jsondata import copy_json


def indication_missing(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    found = indication(order, record, policy)
    if found.source != "none" or pathway(order, record, policy) != "acute":
        return []
    options = []
    field = "reasonCode" if order.resource_type == "MedicationRequest" else "reasonCodeableConcept"
    for reason in policy["indication_missing"]["suggested_reasons"]:
        resource = copy_json(order.raw)
        concept = {"coding": [dict(reason)], "text": reason["display"]}
        resource[field] = [concept] if field == "reasonCode" else concept
        options.append(
            Option(
                kind="update",
                label=f"Indication: {reason['display']} ({reason['code']})",
                description=f"Add the indication {reason['display']} to the diazepam order",
                resource=resource,
                recreate=False,  # re-ordering just to add a reason is not worth a new order
            )
        )
    return [
        new_finding(
            "indication-missing",
            policy["indication_missing"]["indicator"],
            order,
            record,
            facts={},
            audit={"conditions_known": "conditions" not in record.unknown},
            options=options,
        )
    ]
