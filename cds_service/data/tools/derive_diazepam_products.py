"""Derive ``valuesets/diazepam-products.json`` from the CDC benzodiazepine value set.

Run once when the CDC expansion is refreshed:
``python -m cds_service.data.tools.derive_diazepam_products``. The output is committed so a worker
never derives at start-up; route classes and strengths come from the RxNorm names (knowledge
base D.1: classify route from the dose form in the name).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "valuesets"
SOURCE = DATA / "cdc" / "benzodiazepine-medications.json"
OUT = DATA / "diazepam-products.json"

ROUTES = [
    ("Oral Tablet", "oral", "tablet"),
    ("Oral Solution", "oral", "mL"),
    ("Oral Suspension", "oral", "mL"),
    ("Injectable", "parenteral", "mL"),
    ("Auto-Injector", "parenteral", "mL"),
    ("Cartridge", "parenteral", "mL"),
    ("Prefilled Syringe", "parenteral", "mL"),
    ("Rectal Gel", "rectal", "mL"),
    ("Enema", "rectal", "mL"),
    ("Rectal Suppository", "rectal", "suppository"),
    ("Nasal Spray", "nasal", "spray"),
    ("Buccal Film", "buccal", "film"),
]
STRENGTH = re.compile(r"diazepam ([\d.]+) MG(/ML)?", re.IGNORECASE)


def classify(display: str) -> dict[str, object]:
    route, unit = next(((r, u) for form, r, u in ROUTES if form in display), ("unknown", None))
    match = STRENGTH.search(display)
    entry: dict[str, object] = {"route": route}
    if match:
        value = float(match.group(1))
        if match.group(2):
            entry["mg_per_ml"] = value
            if route == "nasal":  # each Valtoco spray device delivers 0.1 mL
                entry["mg_per_unit"] = round(value * 0.1, 3)
        else:
            entry["mg_per_unit"] = value
    if unit:
        entry["unit"] = unit
    if display.startswith("{") or "Pack" in display:
        entry["tty"] = "BPCK" if "[" in display.split("}")[-1] else "GPCK"
    else:
        entry["tty"] = "SBD" if display.rstrip().endswith("]") else "SCD"
    return entry


def main() -> None:
    vs = json.loads(SOURCE.read_text(encoding="utf-8"))
    codes = {}
    for item in vs["expansion"]["contains"]:
        display = item["display"]
        low = display.lower()
        if "diazepam" not in low or "chlordiazepoxide" in low:
            continue
        codes[item["code"]] = {"display": display, **classify(display)}
    out = {
        "id": "diazepam-products",
        "title": "Diazepam products (RxNorm) with route class and strength",
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "source": {
            "label": "CDC Opioid CDS value set benzodiazepine-medications (CC0), filtered to "
            "diazepam; route and strength from the RxNorm names",
            "url": vs["url"],
            "repository": "cqframework/opioid-cds-r4@b29bdcbf6db6f3de26486dbc3820572ee9a78b89",
            "expansion": vs["expansion"].get("timestamp"),
            "derived_by": "cds_service/data/tools/derive_diazepam_products.py",
        },
        "ingredient": {"code": "3322", "display": "diazepam"},
        "brands": ["valium", "diastat", "valtoco", "libervant"],
        "codes": dict(sorted(codes.items(), key=lambda kv: int(kv[0]))),
    }
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
