import pytest

from cds_service.clinical.rules.duration import duration_limit
from tests.clinical.rules.conftest import patient


@pytest.mark.parametrize(
    ("days", "age", "indicator"),
    [
        (7, 40, None),
        (8, 40, "info"),  # R6 (turn 2): inside the 14-day maximum
        (14, 40, "info"),
        (15, 40, "warning"),
        (15, 70, "warning"),  # F.0-6: a long supply alone is never critical
        (10, 70, "info"),
    ],
)
def test_thresholds(order, policy, days, age, indicator):
    found = duration_limit(order(days=days, reason="M62.830"), patient(age), policy)
    assert [f.indicator for f in found] == ([indicator] if indicator else [])


def test_update_rewrites_supply_and_quantity_consistently(order, policy):
    made = order(days=30, reason="M62.830", mg=5, times=3)
    made.raw["dispenseRequest"]["quantity"] = {"value": 90, "unit": "tablet", "code": "{tbl}"}
    made.raw["dispenseRequest"]["numberOfRepeatsAllowed"] = 2
    made.quantity, made.quantity_unit = 90, "tablet"
    [f] = duration_limit(made, patient(40), policy)
    [opt] = f.options
    res = opt.resource
    assert opt.kind == "update" and res["id"] == "dz"
    assert res["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    assert res["dispenseRequest"]["quantity"]["value"] == 21
    assert res["dispenseRequest"]["numberOfRepeatsAllowed"] == 0
    assert f.audit["days_supply"] == 30


def test_no_cap_for_seizure_spasticity_or_rescue_routes(order, policy):
    assert duration_limit(order(days=30, reason="G40.909"), patient(40), policy) == []
    ms = patient(40, conditions={"multiple_sclerosis": None})
    assert duration_limit(order(days=30), ms, policy) == []
    assert duration_limit(order(days=30, code="801961"), patient(40), policy) == []


def test_unknown_indication_oral_is_capped(order, policy):
    assert duration_limit(order(days=30), patient(40), policy)[0].indicator == "warning"


def test_unknown_indication_is_not_called_muscle_spasm(order, policy):
    """R12 applies the R6 defaults to an oral order without indication, but the cards must not
    claim the order is for muscle spasm."""
    from cds_service.clinical.cards import load_templates, render
    from cds_service.clinical.rules.alternatives import muscle_relaxant_alternative
    from cds_service.clinical.rules.duration import duration_limit
    from tests.clinical.rules.conftest import patient

    templates = load_templates("cards")
    made = order(days=30)
    for rule in (duration_limit, muscle_relaxant_alternative):
        [f] = rule(made, patient(40), policy)
        card = render(f, templates[f.topic], made, policy, "standard", [])
        assert "spasm" not in card["summary"], card["summary"]
        assert "indication" in card["summary"]
        assert len(card["summary"]) < 140
    [f] = duration_limit(order(days=30, reason="M62.830"), patient(40), policy)
    card = render(f, templates[f.topic], made, policy, "standard", [])
    assert "spasm" in card["summary"]


def test_an_as_needed_order_capped_says_up_to_its_tablets(order, policy):
    """Review round 2 N13: an as-needed order's quantity is the most its sig allows for the
    course, and the label says so ("up to 21 tablets"), never a fixed count."""
    prn = order(
        reason="M62.830",
        dosageInstruction=[
            {
                "asNeededBoolean": True,
                "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg", "code": "mg"}}],
            }
        ],
    )
    [f] = duration_limit(prn, patient(40), policy)
    [keep] = f.options
    assert "(up to 21 tablets)" in keep.label, keep.label
    [f] = duration_limit(order(reason="M62.830"), patient(40), policy)
    assert "(21 tablets)" in f.options[0].label and "up to 21" not in f.options[0].label
