"""Body parsing: the fast parser (orjson) must give what the standard library gives, and
everything it refuses must still get the standard library's precise 400."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cds_service.errors import ApiError
from cds_service.hook_request import parse_json_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=4)
    ),
    max_leaves=30,
)


@given(json_values)
def test_fast_parse_equals_the_standard_library(value):
    data = json.dumps(value).encode()
    assert parse_json_body(data) == json.loads(data)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b'{"dose": NaN}', "NaN is not a JSON number"),
        (b'{"dose": -Infinity}', "-Infinity is not a JSON number"),
        (b'{"days": 1e400}', "out of range"),
        (b'{"a": 1,}', "line 1 column"),
        (b"\xff\xfe{}", "not UTF-8 (byte 0)"),
        (b"[" * 5000 + b"]" * 5000, "nesting too deep"),
    ],
)
def test_refused_bodies_get_the_precise_message(body, says):
    with pytest.raises(ApiError) as raised:
        parse_json_body(body)
    assert raised.value.status == 400
    assert says in str(raised.value)


def test_what_only_the_standard_library_accepts_is_still_accepted():
    # a lone surrogate escape: orjson refuses it, JSON's grammar allows it
    assert parse_json_body(b'{"text": "\\ud800"}') == {"text": "\ud800"}
