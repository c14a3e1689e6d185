"""The policy file: shipped defaults, deployment overrides, and start-up errors."""

from __future__ import annotations

import json

import pytest

from cds_service.clinical.policy import PolicyError, deep_merge, load_policy


def test_shipped_policy_has_the_knowledge_base_thresholds(vs):
    policy = load_policy(valuesets=vs)
    assert policy.beers_age == 65
    assert (policy["duration"]["ideal_days"], policy["duration"]["max_days"]) == (7, 14)
    assert policy["renal"]["baclofen_avoid_egfr_age65"] == 60
    assert policy["renal"]["lookback_days"] == 365
    assert policy["windows"]["maoi_days"] == 14
    assert policy.default_profile == "standard"


def test_every_design_choice_says_its_basis(vs):
    text = json.dumps(load_policy(valuesets=vs).data)
    assert text.count("[D") >= 15


def test_override_file_deep_merges(tmp_path, vs):
    path = tmp_path / "p.json"
    path.write_text(
        json.dumps({"duration": {"ideal_days": 5, "cap_to_days": 5}, "default_profile": "epic"})
    )
    policy = load_policy(path, valuesets=vs)
    assert policy["duration"]["ideal_days"] == 5
    assert policy["duration"]["max_days"] == 14
    assert policy.default_profile == "epic"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"default_profile": "cerner"}, "default_profile"),
        ({"duration": {"ideal_days": 30}}, "cap_to_days <= ideal_days <= max_days"),
        ({"beers": {"indicator": "hard-stop"}}, "beers/indicator"),
        (
            {
                "alternatives": {
                    "regimens": {
                        "acute_old": {
                            "baclofen": {
                                "code": "313412",
                                "text": "x",
                                "mg": 5,
                                "frequency": 3,
                                "period": 1,
                                "period_unit": "d",
                            }
                        }
                    }
                }
            },
            "not a baclofen product",
        ),
    ],
)
def test_bad_policy_stops_with_a_clear_message(vs, override, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(")):
        load_policy(valuesets=vs, overrides=override)


def test_unreadable_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="unreadable"):
        load_policy(bad)


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}}
    out = deep_merge(base, {"a": {"b": 3}})
    assert out == {"a": {"b": 3, "c": 2}} and base == {"a": {"b": 1, "c": 2}}
