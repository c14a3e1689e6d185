"""The text-match memo of ``ValueSets``: same answers as the regular expressions, any case,
bounded in entries and text length, and actually consulted (the second look-up of a text
runs no regular expression)."""

from __future__ import annotations

import pytest

from cds_service.clinical import valuesets as vs_module
from cds_service.clinical.valuesets import ValueSets, load_valuesets

MEDICATION_TEXTS = [
    "Diazepam 5 MG Oral Tablet",
    "VALIUM 10 mg tab",
    "oxycodone / acetaminophen 5-325",
    "Baclofen 10 MG and tizanidine",
    "zolpidem ER",
    "vitamin D3",
    "",
]
CONDITION_TEXTS = [
    "Multiple sclerosis, relapsing",
    "PREGNANCY, first trimester",
    "Low back pain with spasm",
    "seizure disorder (convulsions)",
    "hypertension",
]


@pytest.fixture
def fresh() -> ValueSets:
    return load_valuesets()


def test_memo_answers_like_the_patterns(fresh: ValueSets) -> None:
    for text in MEDICATION_TEXTS:
        for variant in (text, text.upper(), text.swapcase()):
            expected = fresh._match_ingredients(variant)
            assert fresh.ingredients_in_text(variant) == expected  # miss
            assert fresh.ingredients_in_text(variant) == expected  # hit
    for text in CONDITION_TEXTS:
        for variant in (text, text.upper(), text.swapcase()):
            expected = fresh._match_groups(variant)
            assert fresh.groups_of_text(variant) == expected
            assert fresh.groups_of_text(variant) == expected
    # the data make these non-trivial: a memo returning empty sets would fail here
    assert "diazepam" in fresh.ingredients_in_text("VALIUM 10 mg tab")
    assert fresh.groups_of_text("PREGNANCY, first trimester")
    assert fresh.ingredients_in_text("vitamin D3") == frozenset()


def test_second_look_up_runs_no_pattern(fresh: ValueSets, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    real = fresh._match_ingredients
    monkeypatch.setattr(fresh, "_match_ingredients", lambda t: calls.append(t) or real(t))
    first = fresh.ingredients_in_text("Diazepam 5 MG Oral Tablet")
    again = fresh.ingredients_in_text("diazepam 5 mg oral tablet")  # same key: lower-cased
    assert first == again == frozenset({"diazepam"})
    assert calls == ["diazepam 5 mg oral tablet"]


def test_memo_is_bounded(fresh: ValueSets, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(vs_module, "TEXT_CACHE_MAX_ENTRIES", 50)
    for n in range(500):
        fresh.groups_of_text(f"condition number {n}")
        assert len(fresh._text_cache) <= 50
    long_text = "diazepam " * 200  # longer than TEXT_CACHE_MAX_CHARS: answered, not kept
    assert len(long_text) > vs_module.TEXT_CACHE_MAX_CHARS
    size = len(fresh._text_cache)
    assert fresh.ingredients_in_text(long_text) == frozenset({"diazepam"})
    assert len(fresh._text_cache) == size


def test_memo_is_per_instance() -> None:
    one, two = load_valuesets(), load_valuesets()
    one.groups_of_text("multiple sclerosis")
    assert one._text_cache and not two._text_cache
