"""The code systems the service publishes: card topics and override reasons, as FHIR R4
``CodeSystem`` JSON at ``GET /fhir/CodeSystem/{id}``.

Cards name their topic (``source.topic``) and the reasons a clinician may give for dismissing
them (``overrideReasons``) with codes of these two systems; their canonical URLs are
``{CDS_CANONICAL_BASE}/CodeSystem/cds-topic`` and ``…/override-reason``. Both are built once per
worker from the loaded card templates, so every code a card can carry is in the CodeSystem with
the display the card shows, and the ``version`` is the clinical policy's. No patient data: the
route is open like ``/health`` (an EHR analyst mapping override reasons can read it without a
CDS Hooks JWT) and CORS applies as to every route.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from flask import Blueprint, Flask, Response, current_app

from cds_service.clinical.cards import Template, override_reason_concepts
from cds_service.clinical.policy import Policy
from cds_service.config import OVERRIDE_CODE_SYSTEM, TOPIC_CODE_SYSTEM
from cds_service.errors import ApiError

EXTENSION = "cds.code_systems"
PATH_PREFIX = "/fhir/CodeSystem/"
FHIR_JSON = "application/fhir+json"
fhir_bp = Blueprint("fhir", __name__, url_prefix="/fhir")


def _header(
    code_system_id: str, url: str, policy: Policy, name: str, title: str, description: str
) -> dict[str, Any]:
    return {
        "resourceType": "CodeSystem",
        "id": code_system_id,
        "url": url,
        "version": str(policy.data.get("version", "unversioned")),
        "name": name,
        "title": title,
        "status": "active",
        "experimental": False,
        "publisher": "diazepam-cds",
        "description": description,
        "caseSensitive": True,
        "content": "complete",
    }


def topic_code_system(templates: Mapping[str, Template], policy: Policy) -> dict[str, Any]:
    concepts = [
        {"code": topic, "display": templates[topic].data["topic"]["display"]}
        for topic in sorted(templates)
    ]
    return {
        **_header(
            TOPIC_CODE_SYSTEM,
            policy.topic_system,
            policy,
            "DiazepamCdsTopic",
            "diazepam-cds card topics",
            "The topic of each diazepam-cds card (CDS Hooks `card.source.topic`): one code per "
            "card template. Feedback and repeat suppression are keyed on it.",
        ),
        "count": len(concepts),
        "concept": concepts,
    }


def override_reason_code_system(
    templates: Mapping[str, Template], policy: Policy
) -> dict[str, Any]:
    offered_by: dict[str, list[str]] = {}
    for topic in sorted(templates):
        for reason in templates[topic].data["override_reasons"]:
            offered_by.setdefault(reason["code"], []).append(topic)
    concepts = [
        {
            "code": code,
            "display": display,
            "property": [{"code": "topic", "valueCode": topic} for topic in offered_by[code]],
        }
        for code, display in sorted(override_reason_concepts(dict(templates)).items())
    ]
    return {
        **_header(
            OVERRIDE_CODE_SYSTEM,
            policy.override_system,
            policy,
            "DiazepamCdsOverrideReason",
            "diazepam-cds override reasons",
            "Reasons a clinician may give for dismissing a warning or critical diazepam-cds card "
            "(CDS Hooks `card.overrideReasons`; info cards offer none). Property `topic` names "
            "the card topics that offer each reason.",
        ),
        "property": [
            {
                "code": "topic",
                "description": "A card topic (code of the cds-topic CodeSystem) offering this "
                "reason.",
                "type": "code",
            }
        ],
        "count": len(concepts),
        "concept": concepts,
    }


def build_code_systems(
    templates: Mapping[str, Template], policy: Policy
) -> dict[str, dict[str, Any]]:
    return {
        TOPIC_CODE_SYSTEM: topic_code_system(templates, policy),
        OVERRIDE_CODE_SYSTEM: override_reason_code_system(templates, policy),
    }


@fhir_bp.get("/CodeSystem/<codesystem_id>")
def code_system(codesystem_id: str) -> Response:
    served: dict[str, bytes] = current_app.extensions[EXTENSION]
    body = served.get(codesystem_id)
    if body is None:
        known = ", ".join(sorted(served))
        raise ApiError(404, f"Unknown CodeSystem '{codesystem_id[:100]}'. Known: {known}.")
    return current_app.response_class(body, mimetype=FHIR_JSON)


def register_code_systems(app: Flask) -> None:
    """Serialise both code systems once per worker, from the engine's templates and policy."""
    advisor = app.extensions["cds.advisor"]
    systems = build_code_systems(advisor.templates, advisor.policy)
    app.extensions[EXTENSION] = {key: orjson.dumps(value) for key, value in systems.items()}
    app.register_blueprint(fhir_bp)
