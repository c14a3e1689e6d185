"""Shared by the store, feedback, metrics and report tests: a scripted advisor standing in
for the clinical engine (cards with ``_audit``, as the engine contract says), hook bodies
that need no FHIR server, and feedback bodies."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import date
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parents[1] / "data"
# A site policy with fire once (F.2a) off: for tests of repeat suppression after an override,
# whose order-select and order-sign cards are the same (fire once would withhold them all).
NO_FIRE_ONCE = {"fire_once": {"enabled": False}}


def policy_file(directory: Path, data: dict[str, Any]) -> str:
    """A CDS_POLICY_FILE holding ``data`` (deep-merged over the shipped policy)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "site-policy.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


PREFETCH_KEYS = ("patient", "medications", "conditions", "observations", "allergies")


class ScriptedAdvisor:
    """Advises on every call with cards built from ``topics`` [(topic code, indicator)],
    fresh uuids each time, the order id and rule inputs in ``_audit``."""

    def __init__(self, topics: list[tuple[str, str]], order_id: str = "MedicationRequest/rx-1"):
        self.topics = topics
        self.order_id = order_id
        self.issued: list[dict[str, Any]] = []

    def orders_in_scope(self, request: Any) -> list[str]:
        return [self.order_id]

    def advise(self, request, orders, data, profile, timings):  # type: ignore[no-untyped-def]
        cards = [make_card(topic, indicator, self.order_id) for topic, indicator in self.topics]
        self.issued.extend(cards)
        return copy.deepcopy(cards)


def make_card(topic: str, indicator: str = "warning", order_id: str = "MedicationRequest/rx-1"):
    return {
        "uuid": str(uuid.uuid4()),
        "summary": f"Card about {topic}",
        "indicator": indicator,
        "source": {
            "label": "diazepam-cds",
            "topic": {"system": "https://diazepam-cds.example/topics", "code": topic},
        },
        "suggestions": [{"uuid": str(uuid.uuid4()), "label": "Use baclofen"}],
        "selectionBehavior": "at-most-one",
        "_audit": {
            "order_id": order_id,
            "rule": topic,
            "age": 78,
            "egfr": 45,
            "codes": ["197591"],
            "name": "Jane Doe",  # must never reach the store: engine contract says no names
        },
    }


def hook_body(
    hook: str = "order-select",
    *,
    patient: str = "pat-7",
    user: str = "Practitioner/doc-1",
    order_id: str = "rx-1",
    hook_instance: str | None = None,
) -> dict[str, Any]:
    """A sandbox request with the patient prefetched (and the rest null: nothing to fetch)."""
    name = f"{hook}-request_r4-server"
    body = json.loads((DATA / "sandbox" / f"{name}.json").read_text(encoding="utf-8"))
    body.pop("fhirServer", None)
    body.pop("fhirAuthorization", None)
    body["hookInstance"] = hook_instance or str(uuid.uuid4())
    context = body["context"]
    context["patientId"], context["userId"] = patient, user
    resource = context["draftOrders"]["entry"][0]["resource"]
    resource["id"] = order_id
    resource.setdefault("subject", {})["reference"] = f"Patient/{patient}"
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{order_id}"]
    body["prefetch"] = {key: None for key in PREFETCH_KEYS}
    body["prefetch"]["patient"] = {
        "resourceType": "Patient",
        "id": patient,
        "birthDate": "1947-05-01",
        "gender": "female",
    }
    return body


def accepted(card: dict[str, Any], when: str = "2026-01-15T10:00:00.000Z") -> dict[str, Any]:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": when,
    }


def overridden(
    card_uuid: str, reason: str | None = "patient-preference", when: str = "2026-01-15T10:01:00Z"
) -> dict[str, Any]:
    item: dict[str, Any] = {"card": card_uuid, "outcome": "overridden", "outcomeTimestamp": when}
    if reason:
        item["overrideReason"] = {
            "reason": {"code": reason, "system": "https://diazepam-cds.example/override-reasons"}
        }
    return item


def call_counts(
    day: date,
    cards: int,
    *,
    service_id: str = "diazepam-order-sign",
    profile: str = "",
    suppressed: int = 0,
) -> dict[str, Any]:
    """A ``CallRecord``'s per-call counters for one hook call on one diazepam order."""
    return {
        "day": day,
        "service_id": service_id,
        "profile": profile,
        "client_iss": "",
        "client_tenant": "",
        "calls": 1,
        "calls_with_orders": 1,
        "diazepam_orders": 1,
        "cards": cards,
        "suppressed": suppressed,
    }
