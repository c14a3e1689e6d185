"""Builders for rule tests: a diazepam order from draft JSON, a patient record by hand."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from cds_service.clinical.models import LabValue, MedicationUse, PatientRecord
from cds_service.clinical.orders import OrderReader
from cds_service.clinical.valuesets import ValueSets

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ORDER_DATE = date(2026, 1, 15)




@pytest.fixture(scope="session")
def reader(vs: ValueSets) -> OrderReader:
    return OrderReader(vs)


@pytest.fixture
def order(reader: OrderReader):
    """order(days=30, mg=5, times=3, code='197591', reason='M62.830', **raw overrides)"""

    def _make(
        days: float = 30,
        mg: float = 5,
        times: int = 3,
        code: str = "197591",
        reason: str | None = None,
        **over: Any,
    ):
        res: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": "dz",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": "Patient/p"},
            "authoredOn": ORDER_DATE.isoformat(),
            "medicationCodeableConcept": {"coding": [{"system": RX, "code": code}]},
            "dosageInstruction": [
                {
                    "timing": {"repeat": {"frequency": times, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [
                        {
                            "doseQuantity": {
                                "value": mg,
                                "unit": "mg",
                                "system": "http://unitsofmeasure.org",
                                "code": "mg",
                            }
                        }
                    ],
                }
            ],
            "dispenseRequest": {
                "expectedSupplyDuration": {
                    "value": days,
                    "code": "d",
                    "system": "http://unitsofmeasure.org",
                    "unit": "days",
                }
            },
        }
        if reason:
            res["reasonCode"] = [{"coding": [{"system": ICD, "code": reason}]}]
        res.update(over)
        made = reader.read(res)
        assert made is not None
        return made

    return _make


def med(
    vs: ValueSets,
    *names: str,
    start: date | None = None,
    status: str = "active",
    end: date | None = None,
) -> MedicationUse:
    ingredients = frozenset(names)
    return MedicationUse(
        ref="MedicationRequest/x",
        ingredients=ingredients,
        classes=vs.classes_of(ingredients),
        status=status,
        start=start,
        end=end,
    )


def patient(
    age: int | None = 40,
    conditions: dict[str, date | None] | None = None,
    meds: list[MedicationUse] | None = None,
    egfr: float | None = None,
    **kw: Any,
) -> PatientRecord:
    record = PatientRecord(
        age_years=age,
        age_months=None if age is None else age * 12,
        conditions=dict(conditions or {}),
        medications=list(meds or []),
        **kw,
    )
    if egfr is not None:
        record.egfr = LabValue("egfr", egfr, "mL/min/{1.73_m2}", ORDER_DATE, "98979-8")
    return record


def topics(findings) -> list[str]:
    return [f.topic for f in findings]
