"""Property tests for card rendering: whatever the facts and whatever the order, a card has a
summary under 140 characters, no empty field, and passes the spec's Card schema.

Two levels: ``render`` fed arbitrary fact values for every template variant (the strings a
rule could ever hand it), and the whole service fed diazepam orders whose numbers, units and
timing vary over every fixture scenario's patient, in both EHR profiles.
"""

from __future__ import annotations

import copy
import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.app import create_app
from cds_service.clinical.cards import SUMMARY_MAX, load_templates, placeholders, render
from cds_service.clinical.models import DiazepamOrder, Finding
from cds_service.clinical.policy import load_policy
from cds_service.clinical.valuesets import load_valuesets
from cds_service.compare import card_problems as spec_card_problems
from cds_service.config import load_settings
from cds_service.pipeline import prune
from tests.robustness.contract import card_problems, schema_errors

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "scenarios"
SCENARIOS = sorted(FIXTURES.glob("*.json"))
PROPERTY = settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_VALUESETS = load_valuesets()
POLICY = load_policy(valuesets=_VALUESETS)
TEMPLATES = load_templates(load_settings(environ={}).cards_dir)
VARIANTS = sorted(
    (topic, name) for topic, template in TEMPLATES.items() for name in template.data["variants"]
)

fact_values = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(categories=["Zs", "Cc"]), max_size=20),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.none(),
)


@PROPERTY
@given(
    data=st.data(), variant=st.sampled_from(VARIANTS), profile=st.sampled_from(["standard", "epic"])
)
def test_rendered_cards_fit_whatever_the_facts(data, variant, profile):
    topic, name = variant
    template = TEMPLATES[topic]
    texts = template.data["variants"][name]
    fields = sorted(placeholders(texts["summary"]) | placeholders(texts["detail"]))
    facts = {field: data.draw(fact_values, label=field) for field in fields}
    unknowns = data.draw(st.lists(st.text(min_size=1, max_size=80), max_size=3), label="unknowns")
    order = DiazepamOrder(
        ref="MedicationRequest/p",
        resource_type="MedicationRequest",
        raw={"resourceType": "MedicationRequest", "id": "p"},
        order_date=date(2026, 3, 2),
        matched_by="code",
    )
    finding = Finding(topic, "warning", order.ref, variant=name, facts=facts, unknowns=unknowns)
    card = render(finding, template, order, POLICY, profile, [])
    public = prune({k: v for k, v in card.items() if not k.startswith("_")})
    assert 0 < len(public["summary"]) <= SUMMARY_MAX < 140
    assert public["summary"] == " ".join(public["summary"].split())  # one line, no edges
    assert public["detail"].strip()
    assert not spec_card_problems(public), spec_card_problems(public)
    assert not schema_errors("Card", public)
    # Whatever prune removed must not have been required (source, summary, indicator).
    assert public["source"]["label"] and public["indicator"] == "warning"


def _base(path: Path) -> tuple[str, dict[str, Any]]:
    scenario = json.loads(path.read_text(encoding="utf-8"))
    return scenario["service"], scenario["request"]


BASES = [_base(p) for p in SCENARIOS]

doses = st.one_of(
    st.sampled_from([0.5, 1, 2, 2.5, 5, 7.5, 10, 15, 20, 40]),
    st.floats(min_value=0.01, max_value=500, allow_nan=False).map(lambda x: round(x, 2)),
)
durations = st.fixed_dictionaries(
    {"value": st.integers(1, 400), "unit": st.sampled_from(["d", "wk", "mo", "h", "days"])}
)
timings = st.fixed_dictionaries(
    {
        "frequency": st.integers(1, 8),
        "period": st.sampled_from([1, 2, 4, 6, 8, 12, 24]),
        "periodUnit": st.sampled_from(["d", "h", "wk"]),
    }
)


def _mutate(body: dict[str, Any], dose: float, timing: dict, duration: dict, prn: bool) -> None:
    for entry in body["context"]["draftOrders"].get("entry", []):
        resource = entry.get("resource", {})
        for dosage in resource.get("dosageInstruction", [])[:1]:
            dosage["timing"] = {"repeat": dict(timing)}
            dosage["doseAndRate"] = [
                {
                    "doseQuantity": {
                        "value": dose,
                        "unit": "mg",
                        "system": "http://unitsofmeasure.org",
                        "code": "mg",
                    }
                }
            ]
            dosage.pop("doseQuantity", None)
            if prn:
                dosage["asNeededBoolean"] = True
        dispense = resource.setdefault("dispenseRequest", {})
        dispense["expectedSupplyDuration"] = {
            "value": duration["value"],
            "unit": duration["unit"],
            "system": "http://unitsofmeasure.org",
            "code": duration["unit"],
        }


@pytest.fixture(scope="module")
def profile_apps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Flask]:
    apps = {}
    for profile in ("standard", "epic"):
        data_dir = tmp_path_factory.mktemp(profile) / "data"
        apps[profile] = create_app(
            {"auth": "disabled", "data_dir": str(data_dir), "ehr_profile": profile}
        )
    return apps


@settings(PROPERTY, max_examples=120)
@given(
    base=st.sampled_from(BASES),
    profile=st.sampled_from(["standard", "epic"]),
    dose=doses,
    timing=timings,
    duration=durations,
    prn=st.booleans(),
)
def test_every_card_for_any_order_is_valid(
    profile_apps, base, profile, dose, timing, duration, prn
):
    service, request = base
    body = copy.deepcopy(request)
    _mutate(body, dose, timing, duration, prn)
    response = profile_apps[profile].test_client().post(f"/cds-services/{service}", json=body)
    assert response.status_code == 200, response.get_data()[:300]
    cards = response.get_json()["cards"]
    for card in cards:
        assert not card_problems(card), (card["summary"], card_problems(card))
    assert len({c["uuid"] for c in cards}) == len(cards)
    topics = [(c["source"]["topic"]["code"]) for c in cards]
    assert all(topics), "every card names its topic (feedback and suppression key on it)"
