"""The committed RxNorm product → ingredient table: up to date with its generator, every code
with a named source, the common products present, and a broken table stops start-up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds_service.clinical.valuesets import VALUESET_DIR, ValueSetError, load_valuesets
from cds_service.data.tools import build_rxnorm_ingredients as tool

TABLE = VALUESET_DIR / "rxnorm-ingredients.json"

CONTRACT_CLASSES = {
    "opioid", "benzodiazepine", "z_drug", "gabapentinoid", "barbiturate", "antiepileptic",
    "antidepressant", "antipsychotic", "smr", "cyp1a2_strong", "cyp1a2_other", "maoi",
    "serotonergic", "antihypertensive", "cyp3a4_2c19_inhibitor", "cyp3a4_2c19_strong",
    "anticoagulant", "antiplatelet", "nsaid", "ppi", "naloxone",
}  # fmt: skip
CONTRACT_GROUPS = {
    "substance_use_disorder", "alcohol_use_disorder", "stiff_man_syndrome", "athetosis",
    "falls_risk", "gi_bleed_or_ulcer", "chronic_lung_disease", "falls", "hepatic_failure",
    "liver_disease", "copd", "breastfeeding", "pregnancy", "sleep_apnea", "seizure",
}  # fmt: skip

# ingredient → at least these codes (product codes named in the brief and knowledge D.3)
COMMON = {
    "ciprofloxacin": {"197511", "197512", "199370", "2551"},
    "fluvoxamine": {"903884", "42355"},
    "oxycodone": {"1049621"},
    "hydrocodone": {"857002"},
    "tramadol": {"835603"},
    "morphine": {"892582"},
    "codeine": {"993781"},
    "gabapentin": {"310431"},
    "pregabalin": {"483440"},
    "baclofen": {"197391"},
    "tizanidine": {"313412"},
    "cyclobenzaprine": {"828348"},
}
# ingredients that must have at least one product code in the table
WITH_PRODUCTS = [
    "zolpidem", "eszopiclone", "phenobarbital", "alprazolam", "lorazepam", "clonazepam",
    "methocarbamol", "metaxalone", "carisoprodol", "phenelzine", "selegiline", "linezolid",
    "fluoxetine", "omeprazole", "warfarin", "apixaban", "rivaroxaban", "clopidogrel", "aspirin",
    "ibuprofen", "naproxen", "naloxone",
]  # fmt: skip


@pytest.fixture(scope="module")
def table():
    return json.loads(TABLE.read_text(encoding="utf-8"))


def test_committed_table_matches_its_generator(table):
    rebuild = "python -m cds_service.data.tools.build_rxnorm_ingredients build"
    assert tool.build() == table, f"out of date: run {rebuild}"


def test_every_code_names_known_sources(table):
    names = set(table["sources"])
    for code, entry in table["codes"].items():
        assert entry["sources"], code
        assert set(entry["sources"]) <= names, code
    for sid, meta in table["sources"].items():
        assert meta.get("url") or meta.get("repository"), sid


def test_common_products_present(table):
    for ingredient, codes in COMMON.items():
        for code in codes:
            assert ingredient in table["codes"][code]["ingredients"], (ingredient, code)
    have = {i for e in table["codes"].values() if e["tty"] != "IN" for i in e["ingredients"]}
    assert set(WITH_PRODUCTS) <= have, set(WITH_PRODUCTS) - have


def test_contract_names_exist():
    vs = load_valuesets()
    classes = {c for cs in vs.ingredient_classes.values() for c in cs}
    assert classes >= CONTRACT_CLASSES, CONTRACT_CLASSES - classes
    assert set(vs.conditions) >= CONTRACT_GROUPS, CONTRACT_GROUPS - set(vs.conditions)
    assert {"gabapentin", "pregabalin"} <= {
        i for i, cs in vs.ingredient_classes.items() if vs.cns_active_classes & cs
    }


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "valuesets"
    shutil.copytree(VALUESET_DIR, target)
    return target


def test_malformed_table_stops_start_up(tmp_path):
    base = _copy(tmp_path)
    data = json.loads((base / "rxnorm-ingredients.json").read_text(encoding="utf-8"))
    data["codes"]["197511"]["tty"] = "XYZ"
    (base / "rxnorm-ingredients.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueSetError, match="rxnorm-ingredients.json"):
        load_valuesets(base)


def test_table_ingredient_missing_from_catalogue_stops_start_up(tmp_path):
    base = _copy(tmp_path)
    data = json.loads((base / "rxnorm-ingredients.json").read_text(encoding="utf-8"))
    data["codes"]["197511"]["ingredients"] = ["cipro-typo"]
    (base / "rxnorm-ingredients.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ValueSetError, match="not in ingredients.json"):
        load_valuesets(base)
