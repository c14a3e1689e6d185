"""The README's example answer is the service's real answer (issue 14: it had gone stale).

Checks the summaries, indicators and suggestion labels written in the README's example block
against what the engine answers for the same fixture, in order."""

from __future__ import annotations

import json
import re
from pathlib import Path

from cds_service.redate import redate

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "fixtures" / "scenarios" / "elderly-78-egfr45-no-baclofen.json"


def _readme_block() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Clinical advice: one example")
    answer = text.index('{"cards": [', start)
    return text[answer : text.index("```", answer)]


def test_readme_example_matches_the_real_answer(client) -> None:
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    # dated today, as replay sends it: the service counts the age to the time of the call
    response = client.post("/cds-services/diazepam-order-sign", json=redate(fixture["request"]))
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    block = _readme_block()
    written = re.findall(r'"summary": "([^"]+)",\s*"indicator": "(\w+)"', block)
    assert written == [(c["summary"], c["indicator"]) for c in cards]
    # per card: the labels written inside each card's block, in order (F.2a: all on one card)
    per_card = re.split(r'\n \{"summary"', block)[1:]
    label = r'"label": "((?:Replace|Keep|Change|Cancel)[^"]+)"'
    written_labels = [re.findall(label, part) for part in per_card]
    assert written_labels == [[s["label"] for s in c.get("suggestions", [])] for c in cards]
