"""The Epic switch check (knowledge base F.2a, issue 19): "Feedback that accepts a create without
the remove is flagged in the report."

End to end through the HTTP API with the real engine: the ``epic`` profile offers "Remove the
pended diazepam order" and "Add X …; diazepam stays" as separate suggestions; feedback accepting
an addition without the removal is logged, counted in ``/metrics`` and flagged by
``diazepam-cds report`` per issuer, tenant and profile, with no patient data.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from cds_service.cli import main
from cds_service.redate import redate
from cds_service.report import switch_report
from tests.scenario_cards import load
from tests.security.helpers import ISS, OTHER_ISS, jwks_of, write_key

SIGN = "/cds-services/diazepam-order-sign"
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/scenarios/young-adult-back-spasm-30d.json"
KEY = "epic-switch-test-key"


def request_for(patient: str) -> dict[str, Any]:
    """The fixture's order for another patient and draft id (each case its own order)."""
    body = redate(load(FIXTURE)["request"])
    text = json.dumps(body).replace("fx-young-adult-back-spasm-30d", f"fx-{patient}")
    body = json.loads(text)
    body["hookInstance"] = str(uuid.uuid4())
    return body


class Ehr:
    """One client of one app: posts hooks and feedback, with a JWT when ``key`` is given."""

    def __init__(self, app: Flask, key: Any = None, iss: str | None = None) -> None:
        self.client, self.key, self.iss = app.test_client(), key, iss

    def post(self, path: str, body: dict[str, Any]) -> Any:
        headers = {}
        if self.key is not None:
            token = self.key.token(aud="http://localhost" + path, iss=self.iss)
            headers["Authorization"] = f"Bearer {token}"
        answer = self.client.post(path, json=body, headers=headers)
        assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
        return answer.get_json()

    def decision_card(self, patient: str) -> dict[str, Any]:
        cards = self.post(SIGN, request_for(patient))["cards"]
        return next(c for c in cards if c.get("suggestions"))

    def accept(self, card: dict[str, Any], *suggestions: dict[str, Any], minutes: int = 0) -> Any:
        when = datetime(2026, 12, 6, 10, 0, tzinfo=UTC) + timedelta(minutes=minutes)
        item = {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": s["uuid"]} for s in suggestions],
            "outcomeTimestamp": when.isoformat().replace("+00:00", "Z"),
        }
        return self.post(f"{SIGN}/feedback", {"feedback": [item]})


def remove_of(card: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in card["suggestions"] if s["label"].startswith("Remove the pended"))


def additions_of(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in card["suggestions"] if s["label"].startswith("Add ")]


def flagged_metric(app: Flask, profile: str = "epic") -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith("cds_feedback_addition_without_removal_total{") and (
            f'profile="{profile}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def moved_back(app: Flask, card: dict[str, Any], minutes: int) -> None:
    """The card's feedback as if received ``minutes`` earlier."""
    then = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=minutes)
    with app.extensions["cds.store"].engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE feedback SET received_at = :t WHERE card_uuid = :c"),
            {"t": then, "c": card["uuid"]},
        )


@pytest.fixture
def epic(make_app: Callable[..., Flask]) -> Flask:
    return make_app(patient_hash_key=KEY, ehr_profile="epic")


def test_epic_card_offers_remove_and_additions(epic: Flask) -> None:
    card = Ehr(epic).decision_card("p0")
    assert card["selectionBehavior"] == "any"
    assert card["suggestions"][0] is remove_of(card)
    assert len(additions_of(card)) >= 2


def test_addition_without_removal_is_flagged(
    epic: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    ehr = Ehr(epic)
    card = ehr.decision_card("p1")
    with caplog.at_level(logging.WARNING, logger="cds_service.feedback"):
        assert ehr.accept(card, additions_of(card)[0])["stored"] == 1
    warning = next(r for r in caplog.records if "possible duplicate therapy" in r.getMessage())
    assert warning.cards == [card["uuid"]] and warning.profiles == ["epic"]
    assert flagged_metric(epic) == 1
    [row] = switch_report(epic.extensions["cds.store"].engine)
    assert (row.issuer, row.profile, row.additions, row.with_removal, row.flagged) == (
        None,
        "epic",
        1,
        0,
        1,
    )


def test_removal_in_the_same_item_or_call_is_a_switch(epic: Flask) -> None:
    ehr = Ehr(epic)
    both = ehr.decision_card("p2")
    ehr.accept(both, remove_of(both), additions_of(both)[0])
    apart = ehr.decision_card("p3")
    items = [
        {
            "card": apart["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": s["uuid"]}],
            "outcomeTimestamp": f"2026-12-06T10:0{n}:00Z",
        }
        for n, s in enumerate([additions_of(apart)[1], remove_of(apart)])
    ]
    assert ehr.post(f"{SIGN}/feedback", {"feedback": items})["stored"] == 2
    assert flagged_metric(epic) == 0
    [row] = switch_report(epic.extensions["cds.store"].engine)
    assert (row.additions, row.with_removal, row.flagged) == (2, 2, 0)


def test_removal_in_a_later_call_clears_the_report_within_the_window(epic: Flask) -> None:
    ehr = Ehr(epic)
    card = ehr.decision_card("p4")
    ehr.accept(card, additions_of(card)[0])
    # the metric counts what the call showed: an addition with no removal yet
    assert flagged_metric(epic) == 1
    ehr.accept(card, remove_of(card), minutes=1)
    engine = epic.extensions["cds.store"].engine
    [row] = switch_report(engine)
    assert (row.additions, row.with_removal, row.flagged) == (1, 1, 0)
    # a removal further apart than the window is not the same switch
    moved_back(epic, card, minutes=0)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE feedback SET received_at = :t WHERE card_uuid = :c "
                "AND accepted_suggestions LIKE :remove"
            ),
            {
                "t": datetime.now(UTC).replace(tzinfo=None) + timedelta(hours=2),
                "c": card["uuid"],
                "remove": f"%{remove_of(card)['uuid']}%",
            },
        )
    [row] = switch_report(engine, window_s=3600)
    assert row.flagged == 1
    assert switch_report(engine, window_s=3 * 3600)[0].flagged == 0


def test_standard_replacement_and_other_creates_are_never_flagged(
    make_app: Callable[..., Flask],
) -> None:
    standard = make_app(patient_hash_key=KEY, ehr_profile="standard")
    ehr = Ehr(standard)
    card = ehr.decision_card("p5")
    replace = next(s for s in card["suggestions"] if s["label"].startswith("Replace with"))
    assert [a["type"] for a in replace["actions"]] == ["delete", "create"]
    ehr.accept(card, replace)
    assert switch_report(standard.extensions["cds.store"].engine) == []
    assert flagged_metric(standard, "standard") == 0


def test_report_by_issuer_and_profile_without_phi(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two issuers on one database, one of them on the epic profile through its issuer entry:
    the report separates them, and prints no patient, user or order id."""
    from cds_service.app import create_app

    keys = {
        iss: write_key(tmp_path, f"k{i}", ec.generate_private_key(ec.SECP384R1()))
        for i, iss in enumerate((ISS, OTHER_ISS))
    }
    issuers = []
    for i, (iss, key) in enumerate(keys.items()):
        (tmp_path / f"jwks-{i}.json").write_text(json.dumps(jwks_of(key)), encoding="utf-8")
        issuers.append({"iss": iss, "jwks_file": f"jwks-{i}.json", "profile": "epic"})
    (tmp_path / "issuers.json").write_text(json.dumps({"issuers": issuers}), encoding="utf-8")
    app = create_app(
        {
            "auth": "required",
            "trusted_issuers": str(tmp_path / "issuers.json"),
            "dev_trust_sandbox": False,
            "public_base_url": "http://localhost",
            "patient_hash_key": KEY,
            "data_dir": str(tmp_path / "data"),
        }
    )
    a, b = Ehr(app, keys[ISS], ISS), Ehr(app, keys[OTHER_ISS], OTHER_ISS)
    for n in range(2):
        card = a.decision_card(f"a{n}")
        a.accept(card, additions_of(card)[0])
    card = b.decision_card("b0")
    b.accept(card, remove_of(card), additions_of(card)[0])
    monkeypatch.setenv("CDS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CDS_PATIENT_HASH_KEY", KEY)
    monkeypatch.delenv("CDS_DATABASE_URL", raising=False)
    assert main(["report", "--json", "--switches"]) == 0
    rows = {r["issuer"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[ISS] == {
        "issuer": ISS,
        "tenant": None,
        "profile": "epic",
        "additions": 2,
        "with_removal": 0,
        "several_added": 0,
        "flagged": 2,
    }
    assert (rows[OTHER_ISS]["additions"], rows[OTHER_ISS]["flagged"]) == (1, 0)
    assert main(["report", "--iss", ISS]) == 0
    text = capsys.readouterr().out
    assert "possible duplicate therapy" in text
    line = next(ln for ln in text.splitlines() if ln.startswith(ISS))
    assert line.split() == [ISS, "-", "epic", "2", "0", "2", "0"]
    assert "fx-a0" not in text and "Practitioner" not in text


def test_two_additions_on_one_card_are_counted_apart(epic: Flask) -> None:
    """Committee review round 3 (M2): Epic lets a prescriber tick two "Add X" on one card,
    two muscle relaxants at once; the report counts such cards whether or not the removal
    came too, and whether the additions came in one feedback call or two."""
    ehr = Ehr(epic)
    one_call = ehr.decision_card("p8")
    ehr.accept(one_call, remove_of(one_call), *additions_of(one_call)[:2])
    two_calls = ehr.decision_card("p9")
    for addition in additions_of(two_calls)[:2]:
        ehr.accept(two_calls, addition)
    single = ehr.decision_card("p10")
    ehr.accept(single, remove_of(single), additions_of(single)[0])
    [row] = switch_report(epic.extensions["cds.store"].engine)
    assert (row.additions, row.several_added, row.with_removal, row.flagged) == (3, 2, 2, 1)
