"""Hot-path rewrites made for the benchmark keep the behaviour they replaced."""

from __future__ import annotations

import json
import random
from typing import Any

from cds_service.pipeline import prune


def _reference_prune(value: Any) -> Any:
    """The original, obviously-correct prune (recursing into everything)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            cleaned = _reference_prune(item)
            if cleaned is None or cleaned == "" or cleaned == [] or cleaned == {}:
                continue
            out[key] = cleaned
        return out
    if isinstance(value, list):
        items = [_reference_prune(v) for v in value]
        return [v for v in items if not (v is None or v == "" or v == [] or v == {})]
    return value


def _random_json(rnd: random.Random, depth: int = 0) -> Any:
    roll = rnd.random()
    if depth > 4 or roll < 0.3:
        return rnd.choice([None, "", 0, 0.0, False, True, 1, "x", [], {}])
    if roll < 0.65:
        return {f"k{i}": _random_json(rnd, depth + 1) for i in range(rnd.randint(0, 4))}
    return [_random_json(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]


def test_prune_matches_the_reference_on_random_documents():
    rnd = random.Random(20261122)
    for _ in range(3000):
        doc = _random_json(rnd)
        # json.dumps tells False from 0 and 0.0 from 0, which == does not
        assert json.dumps(prune(doc)) == json.dumps(_reference_prune(doc)), doc


def test_prune_keeps_falsy_scalars_and_drops_nested_empties():
    card = {"a": 0, "b": False, "c": "", "d": None, "e": [{"f": []}, {"g": {"h": ""}}, 0]}
    assert prune(card) == {"a": 0, "b": False, "e": [0]}
