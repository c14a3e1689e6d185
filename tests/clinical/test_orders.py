"""Order understanding: identity, route, dose, days supplied and reason from draft JSON."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from cds_service.clinical.orders import OrderReader
from cds_service.clinical.valuesets import load_valuesets
from cds_service.hook_request import build_hook_request

RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def reader() -> OrderReader:
    return OrderReader(load_valuesets())


def med_request(**over: Any) -> dict[str, Any]:
    base = {
        "resourceType": "MedicationRequest",
        "id": "mr1",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": "Patient/smart-1288992"},  # the sandbox request's patient
        "authoredOn": "2026-01-15",
        "medicationCodeableConcept": {
            "coding": [{"system": RX, "code": "197591", "display": "diazepam 5 MG Oral Tablet"}],
            "text": "diazepam 5 MG Oral Tablet",
        },
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {"doseQuantity": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"}}
                ],
            }
        ],
        "dispenseRequest": {
            "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM, "code": "d"}
        },
    }
    base.update(over)
    return base


def test_code_match_reads_route_dose_and_days(reader):
    order = reader.read(med_request())
    assert order is not None
    assert (order.matched_by, order.code, order.route) == ("code", "197591", "oral")
    assert (order.mg_per_dose, order.doses_per_day, order.mg_per_day) == (5, 3, 15)
    assert (order.days_supply, order.days_source) == (30, "expectedSupplyDuration")
    assert order.fhir_valid is True
    assert order.ref == "MedicationRequest/mr1"


def test_dose_in_tablets_uses_product_strength(reader):
    res = med_request()
    res["medicationCodeableConcept"]["coding"][0].update(
        code="197589", display="diazepam 10 MG Oral Tablet"
    )
    res["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"] = {
        "value": 2,
        "unit": "tablet",
        "system": UCUM,
        "code": "{tbl}",
    }
    order = reader.read(res)
    assert order.mg_per_dose == 20
    assert order.mg_per_day == 60


def test_quantity_over_daily_use_and_repeats(reader):
    res = med_request()
    res["dispenseRequest"] = {
        "quantity": {"value": 42, "unit": "tablet", "code": "{tbl}"},
        "numberOfRepeatsAllowed": 1,
    }
    order = reader.read(res)
    # 42 tablets at 3 a day = 14 days, times two fills
    assert (order.days_supply, order.days_source) == (28, "quantity")


def test_bounds_duration_when_no_dispense_request(reader):
    res = med_request()
    del res["dispenseRequest"]
    res["dosageInstruction"][0]["timing"]["repeat"]["boundsDuration"] = {"value": 10, "code": "d"}
    order = reader.read(res)
    assert (order.days_supply, order.days_source) == (10, "bounds")


def test_prn_maximum_caps_doses_per_day(reader):
    res = med_request()
    res["dosageInstruction"][0].update(
        asNeededBoolean=True,
        timing={"repeat": {"frequency": 1, "period": 4, "periodUnit": "h"}},
        maxDosePerPeriod={
            "numerator": {"value": 20, "code": "mg"},
            "denominator": {"value": 1, "code": "d"},
        },
    )
    order = reader.read(res)
    assert order.prn is True
    assert order.doses_per_day == 4  # 20 mg/day max ÷ 5 mg per dose, not 6 (q4h)
    assert order.mg_per_day == 20


@pytest.mark.parametrize(
    ("code", "route"),
    [
        ("801961", "rectal"),
        ("2272613", "nasal"),
        ("2682571", "buccal"),
        ("309845", "parenteral"),
        ("309843", "oral"),
    ],
)
def test_route_from_product(reader, code, route):
    res = med_request()
    res["medicationCodeableConcept"] = {"coding": [{"system": RX, "code": code}]}
    assert reader.read(res).route == route


def test_ingredient_code_and_dosage_route(reader):
    res = med_request()
    res["medicationCodeableConcept"] = {"coding": [{"system": RX, "code": "3322"}]}
    res["dosageInstruction"][0]["route"] = {
        "coding": [{"system": "http://snomed.info/sct", "code": "47625008"}]
    }
    order = reader.read(res)
    assert (order.matched_by, order.route, order.route_source) == (
        "ingredient",
        "parenteral",
        "dosage",
    )


def test_text_only_medication_and_brand(reader):
    res = med_request(medicationCodeableConcept={"text": "Valium 5 mg tablet"})
    order = reader.read(res)
    assert order.matched_by == "text"
    assert order.mg_per_unit == 5
    assert order.route == "oral"


def test_other_drug_code_outranks_stray_text(reader):
    res = med_request(
        medicationCodeableConcept={
            "coding": [{"system": RX, "code": "430902", "display": "baclofen 5 MG Oral Tablet"}],
            "text": "baclofen instead of diazepam",
        }
    )
    assert reader.read(res) is None


def test_non_diazepam_and_empty_drafts_are_ignored(reader):
    assert (
        reader.read(
            med_request(medicationCodeableConcept={"coding": [{"system": RX, "code": "1049621"}]})
        )
        is None
    )
    bare = {"resourceType": "MedicationRequest", "id": "x", "status": "draft"}
    assert reader.read(bare) is None


def test_contained_medication_reference(reader):
    res = med_request()
    del res["medicationCodeableConcept"]
    res["contained"] = [
        {
            "resourceType": "Medication",
            "id": "m",
            "code": {"coding": [{"system": RX, "code": "197590"}]},
        }
    ]
    res["medicationReference"] = {"reference": "#m"}
    order = reader.read(res)
    assert order.code == "197590" and order.mg_per_unit == 2


def test_medication_reference_in_draft_bundle(reader, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    res = med_request()
    del res["medicationCodeableConcept"]
    res["medicationReference"] = {"reference": "Medication/med-1"}
    medication = {
        "resourceType": "Medication",
        "id": "med-1",
        "code": {"text": "diazepam"},
        "ingredient": [
            {
                "itemCodeableConcept": {"coding": [{"system": RX, "code": "3322"}]},
                "strength": {
                    "numerator": {"value": 5, "code": "mg"},
                    "denominator": {"value": 1, "code": "{tbl}"},
                },
            }
        ],
    }
    body["context"]["draftOrders"]["entry"] = [{"resource": res}, {"resource": medication}]
    orders = reader.orders_in_scope(build_hook_request(body))
    assert len(orders) == 1
    assert orders[0].matched_by == "ingredient"
    assert orders[0].mg_per_dose == 5


def test_order_select_only_selected(reader, sandbox_request):
    body = sandbox_request("order-select-request_r4-server")
    diaz = med_request(id="d1")
    other = med_request(
        id="o1", medicationCodeableConcept={"coding": [{"system": RX, "code": "430902"}]}
    )
    body["context"]["draftOrders"]["entry"] = [{"resource": diaz}, {"resource": other}]
    body["context"]["selections"] = ["MedicationRequest/o1"]
    assert reader.orders_in_scope(build_hook_request(body)) == []
    body["context"]["selections"] = ["MedicationRequest/d1"]
    assert [o.ref for o in reader.orders_in_scope(build_hook_request(body))] == [
        "MedicationRequest/d1"
    ]


def test_order_sign_reads_every_draft(reader, sandbox_request):
    body = sandbox_request("order-sign-request_r4-server")
    body["context"]["draftOrders"]["entry"] = [
        {"resource": med_request(id="a")},
        {"resource": med_request(id="b")},
    ]
    assert len(reader.orders_in_scope(build_hook_request(body))) == 2


def test_sandbox_dstu2_medication_order(reader, sandbox_request):
    body = sandbox_request("order-sign-request_dstu2-default-server")
    [order] = reader.orders_in_scope(build_hook_request(body))
    assert order.resource_type == "MedicationOrder"
    assert (order.mg_per_dose, order.doses_per_day, order.days_supply) == (5, 1, 30)
    assert order.subject == {"reference": "Patient/smart-1288992"}


def test_reason_code_groups(reader):
    res = med_request(
        reasonCode=[
            {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M62.830"}]}
        ]
    )
    assert "muscle_spasm" in reader.read(res).reason_groups
    res = med_request(reasonCode=[{"text": "seizure cluster"}])
    assert "seizure" in reader.read(res).reason_groups


@pytest.mark.parametrize("junk", [None, 5, "x", [], {"value": "five"}])
def test_malformed_fields_do_not_raise(reader, junk):
    res = med_request()
    res["dosageInstruction"] = [{"timing": junk, "doseAndRate": [{"doseQuantity": junk}]}]
    res["dispenseRequest"] = {"expectedSupplyDuration": junk, "quantity": junk}
    res["reasonCode"] = [junk]
    order = reader.read(copy.deepcopy(res))
    assert order is not None and order.days_supply is None and order.mg_per_dose is None


# -- review: units the service cannot convert, and zero amounts, mean "unknown" -----------------


def test_dose_in_an_unconvertible_unit_is_unknown_not_tablets(reader):
    """'5 [lb_av]' is not 5 tablets (25 mg): only a unit-less dose is read in product units."""
    res = med_request()
    res["dosageInstruction"][0]["doseAndRate"] = [
        {"doseQuantity": {"value": 5, "unit": "[lb_av]", "system": UCUM, "code": "[lb_av]"}}
    ]
    order = reader.read(res)
    assert order.mg_per_dose is None and order.mg_per_day is None
    res["dosageInstruction"][0]["doseAndRate"] = [{"doseQuantity": {"value": 2}}]
    assert reader.read(res).mg_per_dose == 10  # no unit at all: the product's tablets


@pytest.mark.parametrize(
    "dispense",
    [
        {"quantity": {"value": 0, "unit": "tablet", "code": "TAB"}},
        {"quantity": {"value": 30, "unit": "[lb_av]", "code": "[lb_av]"}},
        {"expectedSupplyDuration": {"value": 0, "unit": "d", "code": "d"}},
        {"expectedSupplyDuration": {"value": 3, "unit": "[lb_av]", "code": "[lb_av]"}},
    ],
)
def test_zero_or_foreign_supply_gives_unknown_days(reader, dispense):
    order = reader.read(med_request(dispenseRequest=dispense))
    assert order.days_supply is None


def test_zero_frequency_or_dose_is_unknown(reader):
    res = med_request()
    res["dosageInstruction"][0]["timing"] = {
        "repeat": {"frequency": 0, "period": 1, "periodUnit": "d"}
    }
    order = reader.read(res)
    assert order.doses_per_day is None and order.mg_per_day is None
    res = med_request()
    res["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 0
    order = reader.read(res)
    assert order.mg_per_dose is None and order.mg_per_day is None


def test_reference_index_is_built_only_when_a_reference_is_looked_up():
    from cds_service.clinical.orders import LazyReferenceIndex

    built = []
    resources = [{"resourceType": "Medication", "id": "m1", "code": {"text": "diazepam"}}]

    def source():
        built.append(1)
        return resources

    index = LazyReferenceIndex(source)
    assert built == []
    assert index.get("Medication/m1") is resources[0]
    assert index.get("Medication/other") is None
    assert len(index) == 1 and list(index) == ["Medication/m1"]
    assert built == [1]  # built once, then reused


def test_reading_a_coded_order_never_builds_the_reference_index(reader):
    from cds_service.clinical.orders import LazyReferenceIndex

    built = []
    index = LazyReferenceIndex(lambda: built.append(1) or [])
    order = reader.read(
        {
            "resourceType": "MedicationRequest",
            "id": "rx-1",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "medicationCodeableConcept": {
                "coding": [{"system": RX, "code": "197589", "display": "diazepam 5 MG Oral Tablet"}]
            },
        },
        index,
    )
    assert order is not None and order.code == "197589"
    assert built == []
