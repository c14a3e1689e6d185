"""Whatever a client puts in prefetch, data resolution answers or raises a 412, never crashes."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.discovery import PREFETCH_TEMPLATES
from cds_service.errors import ApiError
from cds_service.fhir.prefetch import read_prefetch
from cds_service.fhir.resolve import resolve_patient_data
from tests.fhir.records import fhir_settings, hook_body, hook_request

scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
resource_types = st.sampled_from(
    ["Patient", "Bundle", "OperationOutcome", "Condition", "MedicationRequest", 5, None]
)
resourceish = st.fixed_dictionaries(
    {"resourceType": resource_types},
    optional={
        "id": json_values,
        "entry": json_values
        | st.lists(st.fixed_dictionaries({}, optional={"resource": json_values}), max_size=3),
        "link": json_values
        | st.lists(
            st.fixed_dictionaries({"relation": st.just("next"), "url": json_values}), max_size=2
        ),
        "issue": json_values,
        "birthDate": json_values,
    },
)
prefetches = st.none() | st.dictionaries(
    st.sampled_from(sorted(PREFETCH_TEMPLATES)), st.none() | resourceish | json_values, max_size=5
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefetch=prefetches)
def test_any_prefetch_resolves_or_is_a_412(prefetch: Any) -> None:
    data = read_prefetch(prefetch)
    assert data.missing <= set(PREFETCH_TEMPLATES)
    body = hook_body("pt-fuzz", fhir_server=None, token=None)
    body["prefetch"] = prefetch
    request = hook_request(body)
    try:
        resolved = resolve_patient_data(request, fhir_settings(), {})
    except ApiError as error:
        assert error.status == 412
        assert "Patient" in error.diagnostics
    else:
        assert resolved.patient is not None
        assert resolved.patient.get("id") in (None, "pt-fuzz")
