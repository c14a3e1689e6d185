"""The JSON tree walks that replaced deepcopy and the recursive prune: same results, and the
copy really is independent of its source."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from cds_service.jsondata import copy_json, prune

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=30,
)


def _empty(v):
    return v is None or v == "" or (isinstance(v, dict | list) and not v)


def _reference_prune(value):
    """The definition, written the slow obvious way."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _reference_prune(v)
            if _empty(v):
                continue
            out[k] = v
        return out
    if isinstance(value, list):
        kept = [_reference_prune(v) for v in value]
        return [v for v in kept if not _empty(v)]
    return value


@given(json_values)
def test_copy_json_equals_deepcopy_and_shares_no_container(value):
    copied = copy_json(value)
    assert copied == copy.deepcopy(value)

    def containers(v):
        if isinstance(v, dict):
            yield v
            for c in v.values():
                yield from containers(c)
        elif isinstance(v, list):
            yield v
            for c in v:
                yield from containers(c)

    source_ids = {id(c) for c in containers(value)}
    assert not source_ids & {id(c) for c in containers(copied)}


def test_mutating_the_copy_leaves_the_source_alone():
    source = {"dosageInstruction": [{"timing": {"repeat": {"frequency": 3}}}]}
    copied = copy_json(source)
    copied["dosageInstruction"][0]["timing"]["repeat"]["frequency"] = 1
    assert source["dosageInstruction"][0]["timing"]["repeat"]["frequency"] == 3


@given(json_values)
def test_prune_matches_its_definition(value):
    assert prune(value) == _reference_prune(value)


def test_prune_drops_nested_empties_but_keeps_false_and_zero():
    card = {
        "summary": "s",
        "detail": "",
        "links": [],
        "suggestions": [{"actions": [{"resource": {"note": [{"text": None}], "x": 0}}]}],
        "flag": False,
        "overrideReasons": [{}, None, ""],
    }
    assert prune(card) == {
        "summary": "s",
        "suggestions": [{"actions": [{"resource": {"x": 0}}]}],
        "flag": False,
    }
