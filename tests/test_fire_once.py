"""Fire once (knowledge base F.2a; issue 19): "a card shown at order-select is not repeated at
order-sign unless it is critical or the order changed".

* the pure decision (``fire_once.decide``) and the keys it compares (card content, order
  fingerprint), without Flask or a database;
* end to end through the real HTTP API, with JWT authentication and the real engine, over every
  fixture in ``fixtures/scenarios/`` in both EHR profiles: order-select then order-sign for the
  same draft and user repeats only critical cards; a changed order, another user or another
  issuer gets every card; nothing but the order-select copy of a card is ever withheld (F.0);
* the policy switch, the deadline guard, a second order-select, the log line and the metrics.

The store side (SQLite and PostgreSQL) is in ``tests/store/test_fire_once_store.py``.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask

from cds_service.app import create_app
from cds_service.compare import card_problems, topic_of
from cds_service.fire_once import (
    SignCard,
    card_content,
    content_hash,
    decide,
    decides,
    drafts_by_ref,
    order_fingerprint,
)
from cds_service.redate import redate
from cds_service.store.hashing import IdHasher
from cds_service.store.store import ShownCard
from tests.scenario_cards import fixture_paths, load
from tests.security.helpers import ISS, OTHER_ISS, KeyPair, jwks_of, write_key
from tests.store.helpers import NO_FIRE_ONCE, policy_file

SELECT = "/cds-services/diazepam-order-select"
SIGN = "/cds-services/diazepam-order-sign"
BASE = "http://localhost"
KEY = "fire-once-test-key"
PATHS = fixture_paths()
IDS = [p.stem for p in PATHS]
HASHER = IdHasher(KEY.encode())


# -- the pure decision ------------------------------------------------------------------------
def shown(order: str = "o1", content: str | None = "c1", fp: str | None = "f1", uuid_="s-1"):
    return ShownCard(order, uuid_, content, fp)


@pytest.mark.parametrize(
    ("card", "expected"),
    [
        (SignCard("warning", "o1", "c1", "f1"), "s-1"),  # same draft, content, order: withheld
        (SignCard("info", "o1", "c1", "f1"), "s-1"),
        (SignCard("critical", "o1", "c1", "f1"), None),  # critical cards always repeat
        (SignCard("warning", "o1", "c1", "f2"), None),  # the order changed
        (SignCard("warning", "o1", "c2", "f1"), None),  # the card says something else
        (SignCard("warning", "o2", "c1", "f1"), None),  # another draft
        (SignCard("warning", None, "c1", "f1"), None),  # no draft named
        (SignCard("warning", "o1", "c1", None), None),  # draft not addressable
        (SignCard("warning", "o1", None, "f1"), None),
    ],
)
def test_decide(card: SignCard, expected: str | None) -> None:
    assert decide([card], [shown()]) == [expected]


def test_a_repeated_card_brings_back_the_decision_card_of_its_order() -> None:
    """Review round 2 N1: the critical opioid card repeats at order-sign and says the choices
    (Cancel first) are on the decision card; withholding that card left naloxone as the only
    action. Another order's decision card, or one with no repeat beside it, stays withheld."""
    critical = SignCard("critical", "o1", "c1", "f1")
    decision = SignCard("warning", "o1", "c2", "f1", decides=True)
    note = SignCard("info", "o1", "c3", "f1")
    other = SignCard("warning", "o2", "c2", "f2", decides=True)
    before = [shown(content=c, uuid_=f"s-{c}") for c in ("c1", "c2", "c3")]
    before.append(shown(order="o2", content="c2", fp="f2", uuid_="s-o2"))
    assert decide([critical, decision, note, other], before) == [None, None, "s-c3", "s-o2"]
    assert decide([decision, note], before) == ["s-c2", "s-c3"]  # nothing repeats: both go
    changed = SignCard("info", "o1", "c3-new", "f1")  # a card whose words changed repeats too
    assert decide([decision, changed], before) == [None, None]


def test_decides_reads_the_actions() -> None:
    assert decides(_card())  # an update of the pended order
    remove = {"actions": [{"type": "delete", "resourceId": "MedicationRequest/rx-1"}]}
    assert decides(_card(suggestions=[remove]))
    naloxone = {"actions": [{"type": "create", "resource": {"resourceType": "MedicationRequest"}}]}
    assert not decides(_card(suggestions=[naloxone]))
    assert not decides(_card(suggestions=[]))


def test_decide_ignores_records_without_hashes() -> None:
    """Rows recorded before migration 0004, or for an answer too late to have been shown."""
    card = SignCard("warning", "o1", "c1", "f1")
    assert decide([card], [shown(content=None), shown(fp=None)]) == [None]
    assert decide([card, card], []) == [None, None]


def _card(**overrides: Any) -> dict[str, Any]:
    card = {
        "uuid": str(uuid.uuid4()),
        "summary": "Diazepam for 10 days: 7 days or fewer is preferred",
        "indicator": "info",
        "detail": "Limit the order to 7 days.",
        "source": {"label": "FDA", "topic": {"system": "urn:t", "code": "duration-limit"}},
        "selectionBehavior": "at-most-one",
        "suggestions": [
            {
                "uuid": str(uuid.uuid4()),
                "label": "Keep diazepam, 7 days",
                "actions": [{"type": "update", "resource": {"id": "rx-1", "quantity": 21}}],
            }
        ],
        "_audit": {"order_id": "MedicationRequest/rx-1"},
    }
    card.update(overrides)
    return card


def test_content_hash_ignores_uuids_and_private_keys_only() -> None:
    first, again = _card(), _card(_audit={"order_id": "x", "age": 80})
    assert content_hash(first, HASHER) == content_hash(again, HASHER)
    assert "uuid" not in card_content(first)
    assert all("uuid" not in s for s in card_content(first)["suggestions"])
    # what the clinician reads counts: summary, detail, indicator, suggestions
    changed = [
        _card(summary="Diazepam for 11 days"),
        _card(detail="Limit the order to 7 days.\n\n**Also:** age 78."),
        _card(indicator="warning"),
        _card(suggestions=[{**first["suggestions"][0], "label": "Keep diazepam, 5 days"}]),
        _card(suggestions=[{**first["suggestions"][0], "isRecommended": True}]),
    ]
    assert len({content_hash(c, HASHER) for c in [first, *changed]}) == 1 + len(changed)
    # keyed: another key gives another hash (the store holds no plain digest of card text)
    assert content_hash(first, IdHasher(b"other")) != content_hash(first, HASHER)


DRAFT = {
    "resourceType": "MedicationRequest",
    "id": "rx-1",
    "status": "draft",
    "intent": "order",
    "authoredOn": "2026-12-06",
    "medicationCodeableConcept": {"coding": [{"system": "rxnorm", "code": "197591"}]},
    "reasonCode": [{"coding": [{"code": "M62.830"}]}],
    "dosageInstruction": [
        {
            "route": {"coding": [{"code": "26643006"}]},
            "timing": {"repeat": {"frequency": 3, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg"}}],
        }
    ],
    "dispenseRequest": {
        "quantity": {"value": 30},
        "expectedSupplyDuration": {"value": 10, "code": "d"},
        "numberOfRepeatsAllowed": 0,
        "validityPeriod": {"start": "2026-12-06"},
    },
}


def _fingerprint(draft: dict[str, Any]) -> str | None:
    return order_fingerprint(_card(), drafts_by_ref([draft]), HASHER)


def _changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    draft = copy.deepcopy(DRAFT)
    node = draft
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return draft


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("medicationCodeableConcept", "coding", 0, "code"), "197590"),  # drug / strength
        (("dosageInstruction", 0, "doseAndRate", 0, "doseQuantity", "value"), 2),  # dose
        (("dosageInstruction", 0, "route", "coding", 0, "code"), "37161004"),  # route
        (("dosageInstruction", 0, "timing", "repeat", "frequency"), 2),  # timing
        (("dispenseRequest", "expectedSupplyDuration", "value"), 7),  # duration
        (("dispenseRequest", "quantity", "value"), 21),  # quantity
        (("dispenseRequest", "numberOfRepeatsAllowed"), 1),  # refills
        (("reasonCode", 0, "coding", 0, "code"), "F41.1"),  # reason
    ],
    ids=["drug", "dose", "route", "timing", "duration", "quantity", "refills", "reason"],
)
def test_order_fingerprint_changes_with_the_clinical_content(path, value) -> None:
    assert _fingerprint(_changed(path, value)) != _fingerprint(DRAFT)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("status",), "active"),
        (("authoredOn",), "2026-12-07"),
        (("dispenseRequest", "validityPeriod", "start"), "2026-12-07"),
        (("note",), [{"text": "EHR bookkeeping"}]),
    ],
)
def test_order_fingerprint_ignores_bookkeeping(path, value) -> None:
    assert _fingerprint(_changed(path, value)) == _fingerprint(DRAFT)


def test_no_fingerprint_without_exactly_one_draft() -> None:
    assert _fingerprint(DRAFT) is not None
    assert order_fingerprint(_card(), drafts_by_ref([DRAFT, DRAFT]), HASHER) is None  # shared id
    idless = {k: v for k, v in DRAFT.items() if k != "id"}
    assert order_fingerprint(_card(), drafts_by_ref([idless]), HASHER) is None
    no_order = _card(_audit={})
    assert order_fingerprint(no_order, drafts_by_ref([DRAFT]), HASHER) is None


def test_a_card_about_several_drafts_changes_with_any_of_them() -> None:
    other = {**copy.deepcopy(DRAFT), "id": "rx-2"}
    card = _card(
        _audit={
            "order_id": "MedicationRequest/rx-1",
            "order_ids": ["MedicationRequest/rx-1", "MedicationRequest/rx-2"],
        }
    )
    before = order_fingerprint(card, drafts_by_ref([DRAFT, other]), HASHER)
    other["dispenseRequest"]["quantity"]["value"] = 60
    assert order_fingerprint(card, drafts_by_ref([DRAFT, other]), HASHER) != before
    assert order_fingerprint(card, drafts_by_ref([DRAFT]), HASHER) is None


# -- end to end over every fixture, both profiles ---------------------------------------------
@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyPair]:
    directory = tmp_path_factory.mktemp("fire-once-keys")
    return {
        iss: write_key(directory, f"ec-{i}", ec.generate_private_key(ec.SECP384R1()))
        for i, iss in enumerate((ISS, OTHER_ISS))
    }


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, KeyPair]) -> dict[str, Flask]:
    """One app per EHR profile, JWT authentication on with two trusted issuers, the shipped
    policy (fire once on). The deadline is generous: the guard for late answers (cards of an
    order-select answer later than CDS_DEADLINE_MS never silence a repeat) has its own test,
    and a busy test machine must not turn a suppression into a repeat here."""
    base = tmp_path_factory.mktemp("fire-once-apps")
    issuers = []
    for i, (iss, key) in enumerate(keys.items()):
        (base / f"jwks-{i}.json").write_text(json.dumps(jwks_of(key)), encoding="utf-8")
        issuers.append({"iss": iss, "jwks_file": f"jwks-{i}.json"})
    (base / "issuers.json").write_text(json.dumps({"issuers": issuers}), encoding="utf-8")
    return {
        profile: create_app(
            {
                "auth": "required",
                "trusted_issuers": str(base / "issuers.json"),
                "dev_trust_sandbox": False,
                "public_base_url": BASE,
                "patient_hash_key": KEY,
                "data_dir": str(base / profile),
                "ehr_profile": profile,
                "deadline_ms": 60_000,
            }
        )
        for profile in ("standard", "epic")
    }


def call(app: Flask, key: KeyPair, iss: str, path: str, body: dict[str, Any]) -> list[dict]:
    token = key.token(aud=BASE + path, iss=iss)
    answer = app.test_client().post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    data = answer.get_json()
    assert list(data) == ["cards"] and isinstance(data["cards"], list)  # valid, maybe empty
    for i, card in enumerate(data["cards"]):
        assert not card_problems(card, f"cards[{i}]")
    return data["cards"]


def as_select(request: dict[str, Any]) -> dict[str, Any]:
    """The order-select call for the same drafts: every draft with an id selected."""
    body = copy.deepcopy(request)
    body["hook"], body["hookInstance"] = "order-select", str(uuid.uuid4())
    drafts = [e["resource"] for e in body["context"]["draftOrders"].get("entry") or []]
    body["context"]["selections"] = [
        f"{d['resourceType']}/{d['id']}" for d in drafts if d.get("id")
    ]
    return body


def as_sign(request: dict[str, Any], **context: Any) -> dict[str, Any]:
    body = copy.deepcopy(request)
    body["hook"], body["hookInstance"] = "order-sign", str(uuid.uuid4())
    body["context"].pop("selections", None)
    body["context"].update(context)
    return body


def changed_order(request: dict[str, Any]) -> dict[str, Any]:
    """The same request with every pended order's dosage changed in a way no rule reads (a
    patient instruction): the cards' findings stay the same, so only the order fingerprint
    can tell (tests above show it also changes with dose, timing, supply and the rest)."""
    body = copy.deepcopy(request)
    for entry in body["context"]["draftOrders"].get("entry") or []:
        resource = entry["resource"]
        dosages = resource.get("dosageInstruction")
        if isinstance(dosages, list) and dosages and isinstance(dosages[0], dict):
            dosages[0]["patientInstruction"] = "Changed between order-select and order-sign"
        else:
            resource.setdefault("dispenseRequest", {})["numberOfRepeatsAllowed"] = 0
    return body


def contents(cards: list[dict[str, Any]]) -> Counter[str]:
    return Counter(json.dumps(card_content(c), sort_keys=True) for c in cards)


def about(cards: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return sorted((topic_of(c), c["indicator"], c["summary"]) for c in cards)


def rows(app: Flask, table: str, **where: Any) -> list[dict[str, Any]]:
    # this process's queued cards first (store/card_queue.py: what every reader in the
    # worker that issued them sees)
    if "cds.card_queue" in app.extensions:
        app.extensions["cds.card_queue"].flush()
    clause = " AND ".join(f"{k} = :{k}" for k in where)
    sql = f"SELECT * FROM {table}" + (f" WHERE {clause}" if clause else "")
    with app.extensions["cds.store"].engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(sql), where)]


@pytest.mark.parametrize("profile", ["standard", "epic"])
@pytest.mark.parametrize("path", PATHS, ids=IDS)
def test_order_sign_repeats_only_critical_cards_or_a_changed_order(
    path: Path, profile: str, apps: dict[str, Flask], keys: dict[str, KeyPair]
) -> None:
    app, request = apps[profile], redate(load(path)["request"])
    mine, other = keys[ISS], keys[OTHER_ISS]
    with app.extensions["cds.store"].engine.begin() as connection:  # the previous fixture's
        connection.execute(sa.text("DELETE FROM withheld_cards"))
    select = as_select(request)
    shown = call(app, mine, ISS, SELECT, select)  # none for some (a stated tetanus, IV)
    critical = [c for c in shown if c["indicator"] == "critical"]

    # another issuer, same patient, user and draft ids: every card (issue 17 scoping)
    assert contents(call(app, other, OTHER_ISS, SIGN, as_sign(request))) == contents(shown)
    # another user on the same draft: every card again (the requester of a suggested order
    # is the user, so compare what each card is about)
    other_user = call(app, mine, ISS, SIGN, as_sign(request, userId="Practitioner/fx-other"))
    assert about(other_user) == about(shown)
    # the order changed since order-select: every card again (a rewrite of the pended order
    # carries the change, so again compare what each card is about)
    assert about(call(app, mine, ISS, SIGN, as_sign(changed_order(request)))) == about(shown)
    assert not rows(app, "withheld_cards"), "nothing withheld so far"

    # same draft, user and order: only the critical cards repeat, and with them the decision
    # card (the choices on the order, Cancel among them) they may point to (review round 2 N1)
    sign = as_sign(request)
    repeated = call(app, mine, ISS, SIGN, sign)
    back = critical + [c for c in shown if c["indicator"] != "critical" and critical and decides(c)]
    assert contents(repeated) == contents(back)

    # F.0: what is not sent is exactly the order-select copy of a non-critical card
    withheld = rows(app, "withheld_cards", hook_instance=sign["hookInstance"])
    by_uuid = {c["uuid"]: c for c in shown}
    assert len(withheld) == len(shown) - len(back)
    assert sorted(r["repeat_of"] for r in withheld) == sorted(
        c["uuid"] for c in shown if c not in back
    )
    for row in withheld:
        original = by_uuid[row["repeat_of"]]
        assert (row["reason"], row["topic_code"], row["indicator"]) == (
            "fire-once",
            topic_of(original),
            original["indicator"],
        )
        assert row["client_iss"] == ISS and row["profile"] == profile
    selected = {
        r["card_uuid"]: r["content_hash"]
        for r in rows(app, "issued_cards", hook_instance=select["hookInstance"])
    }
    assert Counter(r["content_hash"] for r in withheld) + Counter(
        selected[c["uuid"]] for c in back
    ) == Counter(selected.values())


# -- switch, guard, second order-select, log and metrics (one fixture) ------------------------
TYPICAL = (
    Path(__file__).resolve().parents[1]
    / "fixtures/scenarios"
    / ("elderly-78-egfr45-no-baclofen.json")
)


def _typical() -> dict[str, Any]:
    return redate(load(TYPICAL)["request"])


def _post(client: Any, path: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    return answer.get_json()["cards"]


def test_the_typical_order_is_shown_once(make_app: Callable[..., Flask]) -> None:
    """The README's older-adult order: three cards at order-select (the decision card with the
    one-click actions among them), none of them critical, so none again at order-sign."""
    client = make_app(patient_hash_key=KEY).test_client()
    request = _typical()
    shown = _post(client, SELECT, as_select(request))
    assert len(shown) >= 2 and not any(c["indicator"] == "critical" for c in shown)
    assert any(c.get("suggestions") for c in shown)  # the decision card
    assert _post(client, SIGN, as_sign(request)) == []


def test_policy_switch_turns_it_off(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    app = make_app(patient_hash_key=KEY, policy_file=policy_file(tmp_path / "policy", NO_FIRE_ONCE))
    client, request = app.test_client(), _typical()
    shown = _post(client, SELECT, as_select(request))
    assert contents(_post(client, SIGN, as_sign(request))) == contents(shown)


def test_a_second_order_select_shows_everything_and_is_what_sign_compares_with(
    make_app: Callable[..., Flask],
) -> None:
    client, request = make_app(patient_hash_key=KEY).test_client(), _typical()
    first = _post(client, SELECT, as_select(request))
    # order-select again for the same draft: nothing withheld (only order-sign repeats are)
    assert contents(_post(client, SELECT, as_select(request))) == contents(first)
    # the order is changed and selected again: order-sign compares with that latest select
    changed = changed_order(request)
    _post(client, SELECT, as_select(changed))
    assert _post(client, SIGN, as_sign(changed)) == []
    # back to the first version: the latest order-select did not see it, so all repeat
    assert contents(_post(client, SIGN, as_sign(request))) == contents(first)


def test_an_order_select_answer_past_the_deadline_never_silences_a_repeat(
    make_app: Callable[..., Flask],
) -> None:
    """The EHR may have given up on a late answer: its cards may never have been shown."""
    app = make_app(patient_hash_key=KEY, deadline_ms=1)  # every answer is "late"
    client, request = app.test_client(), _typical()
    shown = _post(client, SELECT, as_select(request))
    assert contents(_post(client, SIGN, as_sign(request))) == contents(shown)
    assert all(r["content_hash"] is None for r in rows(app, "issued_cards"))


def test_a_database_failure_shows_every_card(make_app: Callable[..., Flask]) -> None:
    app = make_app(patient_hash_key=KEY)
    client, request = app.test_client(), _typical()
    shown = _post(client, SELECT, as_select(request))
    with app.extensions["cds.store"].engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE issued_cards"))
    assert contents(_post(client, SIGN, as_sign(request))) == contents(shown)


def test_log_line_and_metrics_count_what_was_not_repeated(
    make_app: Callable[..., Flask], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(patient_hash_key=KEY)
    client, request = app.test_client(), _typical()
    shown = _post(client, SELECT, as_select(request))
    with caplog.at_level(logging.INFO, logger="cds_service.request"):
        assert _post(client, SIGN, as_sign(request)) == []
    line = next(
        r for r in caplog.records if r.getMessage() == "request" and getattr(r, "path", "") == SIGN
    )
    assert line.suppressed == len(shown)
    assert line.suppressed_by == {"fire-once": len(shown)}
    assert line.cards == 0
    text = client.get("/metrics").get_data(as_text=True)
    withheld = [
        ln
        for ln in text.splitlines()
        if ln.startswith("cds_cards_withheld_total{") and 'reason="fire-once"' in ln
    ]
    assert sum(float(ln.rsplit(" ", 1)[1]) for ln in withheld) == len(shown)
    topics = {topic_of(c) for c in shown}
    assert all(any(f'topic="{t}"' in ln for ln in withheld) for t in topics)
    # no PHI on the log line or in the labels
    assert "fx-elderly" not in json.dumps(line.__dict__, default=str)
    assert "fx-elderly" not in text


# -- what order-sign pays for it (issue 15) -----------------------------------------------------
class _Counted:
    """Counts the calls of the function it wraps."""

    def __init__(self, wrapped: Callable[..., Any]) -> None:
        self.wrapped, self.calls = wrapped, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.wrapped(*args, **kwargs)


def _spied(app: Flask, monkeypatch: pytest.MonkeyPatch) -> tuple[_Counted, _Counted]:
    """(the store's fire-once read, the card content hash), counted."""
    import cds_service.fire_once as fire_once

    store = app.extensions["cds.store"]
    read = _Counted(store.cards_shown_at_order_select)
    monkeypatch.setattr(store, "cards_shown_at_order_select", read)
    hashed = _Counted(fire_once.content_hash)
    monkeypatch.setattr(fire_once, "content_hash", hashed)
    return read, hashed


def test_order_sign_reads_and_hashes_only_when_a_card_could_be_withheld(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No order-select record for the draft: one read, no card hashed, every card shown, and
    the order-sign rows carry no hashes (only order-select's are ever compared). After an
    order-select: the cards are hashed and compared, and withheld."""
    app = make_app(patient_hash_key=KEY)
    client, request = app.test_client(), _typical()
    read, hashed = _spied(app, monkeypatch)
    first = as_sign(request)
    cards = _post(client, SIGN, first)
    assert cards and not any(c["indicator"] == "critical" for c in cards)
    assert (read.calls, hashed.calls) == (1, 0)
    assert all(
        (r["content_hash"], r["order_fingerprint"]) == (None, None)
        for r in rows(app, "issued_cards", hook_instance=first["hookInstance"])
    )
    select = as_select(request)
    shown = _post(client, SELECT, select)
    selected = rows(app, "issued_cards", hook_instance=select["hookInstance"])
    assert selected and all(r["content_hash"] and r["order_fingerprint"] for r in selected)
    read.calls = hashed.calls = 0
    assert _post(client, SIGN, as_sign(request)) == []
    assert (read.calls, hashed.calls) == (1, len(shown))


@pytest.mark.parametrize(
    ("topics", "fire_once"),
    [
        ([("opioid-benzodiazepine", "critical"), ("respiratory", "critical")], True),
        ([("duration-limit", "warning"), ("beers-age", "info")], False),  # policy: off
        ([], True),  # no cards
    ],
    ids=["every-card-critical", "fire-once-off", "no-cards"],
)
def test_order_sign_skips_the_read_when_no_card_can_be_withheld(
    make_app: Callable[..., Flask],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    topics: list[tuple[str, str]],
    fire_once: bool,
) -> None:
    """Even right after an order-select that showed the same cards: nothing is read from the
    store and nothing hashed, and every card is shown."""
    from tests.store.helpers import ScriptedAdvisor, hook_body

    settings: dict[str, Any] = {"patient_hash_key": KEY}
    if not fire_once:
        settings["policy_file"] = policy_file(tmp_path / "policy", NO_FIRE_ONCE)
    app = make_app(**settings)
    app.extensions["cds.advisor"] = ScriptedAdvisor(topics)
    client = app.test_client()
    selected = _post(client, SELECT, hook_body("order-select"))
    read, hashed = _spied(app, monkeypatch)
    signed = _post(client, SIGN, hook_body("order-sign"))
    assert (read.calls, hashed.calls) == (0, 0)
    assert len(signed) == len(selected) == len(topics)
