"""Failures found by the robustness work inside the clinical engine, kept as tests.

Strict xfails: each documents a defect in a module another engineer owns and turns into an
error the day it is fixed, so the mark gets removed and the test keeps guarding the fix.
"""

from __future__ import annotations

import json

import pytest

from cds_service import record
from cds_service.app import create_app
from tests.robustness.hostile import load_cases

SIGN = "/cds-services/diazepam-order-sign"


def _medication_use_calls(app, monkeypatch, drafts: int) -> int:
    case = next(c for c in load_cases() if c.name.endswith("many-draft-orders-within-limit"))
    body = json.loads(case.body())
    body["context"]["draftOrders"]["entry"] = body["context"]["draftOrders"]["entry"][:drafts]
    calls = 0
    real = record.medication_use

    def counting(*args, **kwargs):
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(record, "medication_use", counting)
    response = app.test_client().post(SIGN, json=body)
    assert response.status_code == 200
    return calls


@pytest.mark.xfail(
    strict=True,
    reason="engine: build_record re-reads every other draft order for each diazepam order "
    "(O(n^2): 500 drafts = 249 500 medication_use calls, ~4 s of CPU for one 1 MiB request)",
)
def test_work_grows_linearly_with_the_number_of_draft_orders(tmp_path, monkeypatch):
    app = create_app({"auth": "disabled", "data_dir": str(tmp_path / "data")})
    small = _medication_use_calls(app, monkeypatch, 20)
    large = _medication_use_calls(app, monkeypatch, 200)
    # 10x the drafts may cost 10x the work (plus slack), not 100x.
    assert large <= 12 * max(small, 1), (small, large)
