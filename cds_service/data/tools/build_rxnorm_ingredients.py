"""Build ``valuesets/rxnorm-ingredients.json``: RxNorm product and ingredient codes → ingredients.

Development-time only; the output is committed and a worker only reads it (knowledge base F.1
"interacting drugs": a coded product with no display must still be recognised).

Two steps:

``extract`` (needs local git copies of the public source repositories) saves, as data, the
members of published value-set expansions whose RxNorm name names an ingredient of
``valuesets/ingredients.json``, into ``tools/sources/*.json``. Each saved file records the
repository, commit, commit date and path it was read from. Nothing is executed: the canvas
``medication.py`` files are read as text (one ``"code",  # RxNorm name`` line per member).

    python -m cds_service.data.tools.build_rxnorm_ingredients extract \\
        --canvas /path/to/canvas-medical/canvas-plugins.git \\
        --pedsnet /path/to/PEDSnet/Variable-Dictionary.git \\
        --cdc /path/to/cqframework/opioid-cds-r4.git --cpic-drug-sql drug.sql

``build`` (no network, no repositories) reads the saved sources plus the CDC value sets in
``valuesets/cdc/`` and writes ``valuesets/rxnorm-ingredients.json``:

    python -m cds_service.data.tools.build_rxnorm_ingredients build

How a code gets its ingredients: the RxNorm name carried by the expansion (SCD/SBD/GPCK/BPCK
names spell out every ingredient with its salt, e.g. "acetaminophen 325 MG / hydrocodone
bitartrate 5 MG Oral Tablet") is matched word-wise against the catalogue's ingredient names,
longest first. A code is kept only when at least one catalogue ingredient is named; codes whose
sources disagree are dropped and listed under ``conflicts``. Ingredient (IN) codes come from
``cpicpgx/cpic-schema`` drug.sql rows ``RxNorm:<rxcui> <name>`` whose name is a catalogue
ingredient. Naloxone combined with an opioid agonist (buprenorphine/naloxone, pentazocine/
naloxone) is an abuse deterrent, not rescue naloxone: those products list the opioid only
(``omitted_components`` says so), so "naloxone active" means a rescue product.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "valuesets"
SOURCES = Path(__file__).resolve().parent / "sources"
CATALOGUE = DATA / "ingredients.json"
OUT = DATA / "rxnorm-ingredients.json"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"

# CDC opioid-CDS value sets copied into valuesets/cdc/ (cqframework/opioid-cds-r4, CC0)
CDC_FILES = (
    "cdc/benzodiazepine-medications.json",
    "cdc/opioid-analgesics-with-ambulatory-misuse-potential.json",
    "cdc/extended-release-opioid-with-ambulatory-misuse-potential.json",
    "cdc/buprenorphine-and-methadone-medications.json",
    "cdc/cns-depressant-medications.json",
    "cdc/naloxone-medications.json",
    "cdc/barbiturate-medications.json",
)
# archived (2023) CDC set: the only CDC set with muscle relaxants; saved filtered by ``extract``
CDC_ARCHIVE = "archive/input/vocabulary/valueset/archive/non-opioid-cns-depressant-medications.json"
CANVAS_FILES = (
    "canvas_sdk/value_set/v2026/medication.py",
    "canvas_sdk/value_set/v2022/medication.py",
)
PEDSNET_FILES = (
    "drugs/rx_2022_08_ProtonPumpInhibitors_V1.csv",
    "drugs/rx_2021_03_Antihypertensive_V1.csv",
    "drugs/rx_2018_09_AntiphychoticDrugs_V1.csv",
)
# naloxone as a deterrent inside an agonist product is not rescue naloxone
DETERRENT = {"naloxone": ("buprenorphine", "pentazocine", "oxycodone", "morphine")}


def catalogue_names() -> list[str]:
    data = json.loads(CATALOGUE.read_text(encoding="utf-8"))
    return sorted(data["ingredients"], key=len, reverse=True)


def name_pattern(names: list[str]) -> re.Pattern[str]:
    return re.compile(r"\b(" + "|".join(re.escape(n) for n in names) + r")\b", re.IGNORECASE)


def ingredients_in(display: str, pattern: re.Pattern[str]) -> list[str]:
    return sorted({m.group(1).lower() for m in pattern.finditer(display)})


_FORM = re.compile(
    r"\b(Oral|Tablet|Capsule|Inject|Solution|Suspension|Topical|Transdermal|Nasal|Rectal|"
    r"Ophthalmic|Otic|Sublingual|Buccal|Film|Spray|Patch|Syrup|Elixir|Pack|Powder|Granule|"
    r"Suppository|Cream|Gel|Ointment|Lozenge|Chew|Prefilled|Cartridge|Auto-Injector)",
    re.IGNORECASE,
)


def tty_of(display: str, names: frozenset[str] = frozenset()) -> str:
    """RxNorm term type read from the shape of the normalised name: packs in braces, a brand in
    brackets, a strength in products; without a strength, a dose form makes a drug form
    (SCDF/SBDF), a bare catalogue name an ingredient (IN), a salt a precise ingredient (PIN)
    and "a / b" a multiple ingredient (MIN)."""
    text = display.strip()
    if text.startswith("{"):
        return "BPCK" if text.endswith("]") else "GPCK"
    branded = text.endswith("]")
    if re.search(r"\d", text):
        return "SBD" if branded else "SCD"
    if _FORM.search(text):
        return "SBDF" if branded else "SCDF"
    if " / " in text:
        return "MIN"
    return "IN" if text.lower() in names else "PIN"


# -- extract ----------------------------------------------------------------------------------


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def _commit(repo: Path) -> tuple[str, str]:
    line = _git(repo, "log", "-1", "--format=%H %cs", "HEAD").split()
    return line[0], line[1]


_CLASS = re.compile(r"^class (\w+)\(ValueSet\):", re.M)
_FIELD = re.compile(
    r'^\s+(VALUE_SET_NAME|OID|DEFINITION_VERSION|EXPANSION_VERSION) = "([^"]*)"', re.M
)
_RXNORM_BLOCK = re.compile(r"^\s+RXNORM = \{\n(.*?)^\s+\}", re.M | re.S)
_MEMBER = re.compile(r'^\s+"(\d+)",\s+#\s*(.+?)\s*$', re.M)


def parse_canvas(text: str) -> list[dict[str, Any]]:
    """Value sets of a canvas ``medication.py``, read as text: name, OID, versions, members."""
    starts = [m.start() for m in _CLASS.finditer(text)] + [len(text)]
    out = []
    for begin, end in zip(starts, starts[1:], strict=False):
        block = text[begin:end]
        fields = dict(_FIELD.findall(block))
        rx = _RXNORM_BLOCK.search(block)
        if not rx or "OID" not in fields:
            continue
        out.append(
            {
                "name": fields.get("VALUE_SET_NAME", ""),
                "oid": fields["OID"],
                "url": f"http://cts.nlm.nih.gov/fhir/ValueSet/{fields['OID']}",
                "definition_version": fields.get("DEFINITION_VERSION"),
                "expansion_version": fields.get("EXPANSION_VERSION"),
                "codes": dict(_MEMBER.findall(rx.group(1))),
            }
        )
    return out


def _keep(codes: dict[str, str], pattern: re.Pattern[str]) -> dict[str, str]:
    return {c: d for c, d in sorted(codes.items()) if ingredients_in(d, pattern)}


def extract(args: argparse.Namespace) -> None:
    pattern = name_pattern(catalogue_names())
    SOURCES.mkdir(exist_ok=True)
    if args.canvas:
        repo = Path(args.canvas)
        commit, day = _commit(repo)
        for path in CANVAS_FILES:
            sets = []
            for vs in parse_canvas(_git(repo, "show", f"HEAD:{path}")):
                vs["codes"] = _keep(vs["codes"], pattern)
                if vs["codes"]:
                    sets.append(vs)
            tag = path.split("/")[-2]
            _write(
                f"canvas-{tag}-medication.json",
                {
                    "label": f"VSAC eCQM value set expansions ({tag}) as published in "
                    "canvas-medical/canvas-plugins",
                    "repository": "canvas-medical/canvas-plugins",
                    "commit": commit,
                    "date": day,
                    "path": path,
                    "licence": "MIT (repository); value set content from NLM VSAC",
                    "value_sets": sets,
                },
            )
    if args.pedsnet:
        repo = Path(args.pedsnet)
        commit, day = _commit(repo)
        sets = []
        for path in PEDSNET_FILES:
            text = _git(repo, "show", f"HEAD:{path}")
            rows = csv.DictReader(io.StringIO(text), skipinitialspace=True)
            codes = {
                r["concept_code"]: r["concept_name"]
                for r in rows
                if r.get("vocabulary_id") == "RxNorm" and r.get("concept_code", "").isdigit()
            }
            sets.append({"name": path.split("/")[-1], "path": path, "codes": _keep(codes, pattern)})
        _write(
            "pedsnet-codesets.json",
            {
                "label": "PEDSnet Variable Dictionary drug code sets (OMOP vocabulary; RxNorm "
                "rows only, RxNorm Extension dropped)",
                "repository": "PEDSnet/Variable-Dictionary",
                "commit": commit,
                "date": day,
                "value_sets": sets,
            },
        )
    if args.cdc:
        repo = Path(args.cdc)
        commit, day = _commit(repo)
        vs = json.loads(_git(repo, "show", f"HEAD:{CDC_ARCHIVE}"))
        codes = {
            str(i["code"]): i["display"]
            for i in vs["expansion"]["contains"]
            if i.get("system") == RXNORM
        }
        _write(
            "cdc-archive-non-opioid-cns-depressants.json",
            {
                "label": "CDC opioid-CDS archived value set (CC0)",
                "repository": "cqframework/opioid-cds-r4",
                "commit": commit,
                "date": day,
                "path": CDC_ARCHIVE,
                "value_sets": [
                    {
                        "name": vs["title"],
                        "oid": vs["url"],
                        "url": vs["url"],
                        "expansion_version": vs["expansion"].get("timestamp"),
                        "codes": _keep(codes, pattern),
                    }
                ],
            },
        )
    if args.cpic_drug_sql:
        text = Path(args.cpic_drug_sql).read_text(encoding="utf-8")
        names = set(catalogue_names())
        rows = re.findall(r"^RxNorm:(\d+)\t([^\t]+)\t", text, re.M)
        _write(
            "cpic-drug-ingredients.json",
            {
                "label": "CPIC schema drug table: RxNorm ingredient (IN) ids",
                "repository": "cpicpgx/cpic-schema",
                "commit": args.cpic_commit,
                "date": args.cpic_date,
                "path": "drug.sql",
                "tty": "IN",
                "value_sets": [
                    {
                        "name": "drug.sql",
                        "codes": {c: n for c, n in sorted(rows) if n.lower() in names},
                    }
                ],
            },
        )


def _write(name: str, data: dict[str, Any]) -> None:
    (SOURCES / name).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


# -- build ------------------------------------------------------------------------------------


def _cdc_source(rel: str) -> tuple[dict[str, Any], dict[str, str]]:
    vs = json.loads((DATA / rel).read_text(encoding="utf-8"))
    codes = {
        str(item["code"]): item["display"]
        for item in vs["expansion"].get("contains") or []
        if item.get("system") == RXNORM
    }
    meta = {
        "label": vs.get("title") or vs.get("name"),
        "url": vs["url"],
        "repository": "cqframework/opioid-cds-r4",
        "commit": "b29bdcbf6db6f3de26486dbc3820572ee9a78b89",
        "date": "2025-09-26",
        "path": f"cds_service/data/valuesets/{rel}",
        "expansion": vs["expansion"].get("timestamp"),
    }
    return meta, codes


def build() -> dict[str, Any]:
    known = frozenset(catalogue_names())
    pattern = name_pattern(sorted(known, key=len, reverse=True))
    sources: dict[str, dict[str, Any]] = {}
    members: list[tuple[str, str, str, str | None]] = []  # (source id, code, name, tty)
    for rel in CDC_FILES:
        meta, codes = _cdc_source(rel)
        sid = "cdc:" + rel.split("/")[-1].removesuffix(".json")
        sources[sid] = meta
        members += [(sid, c, d, None) for c, d in codes.items()]
    alts = json.loads((DATA / "alternative-products.json").read_text(encoding="utf-8"))
    sources["project:alternative-products"] = {
        "label": alts["source"]["label"],
        "url": alts["source"]["url"],
        "path": "cds_service/data/valuesets/alternative-products.json",
    }
    members += [
        ("project:alternative-products", c, e["display"], None) for c, e in alts["codes"].items()
    ]
    for path in sorted(SOURCES.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        base = {k: doc[k] for k in ("label", "repository", "commit", "date") if k in doc}
        for vs in doc["value_sets"]:
            if "oid" in vs:
                sid = vs["oid"] if "://" in vs["oid"] else f"vsac:{vs['oid']}"
                meta = {**base, "label": vs["name"], "url": vs["url"], "path": doc["path"]}
                meta["expansion"] = vs.get("expansion_version")
                if sid in sources:  # the same OID in two canvas versions: keep both paths
                    sources[sid].setdefault("also", []).append(meta)
                    members += [(sid, c, d, None) for c, d in vs["codes"].items()]
                    continue
            else:
                sid = f"{doc['repository'].split('/')[0].lower()}:{vs['name']}"
                meta = {**base, "label": f"{doc['label']}: {vs['name']}"}
                meta["path"] = vs.get("path") or doc.get("path")
            sources[sid] = meta
            members += [(sid, c, d, doc.get("tty")) for c, d in vs["codes"].items()]

    codes: dict[str, dict[str, Any]] = {}
    conflicts: dict[str, list[str]] = {}
    for sid, code, display, tty in members:
        found = ingredients_in(display, pattern)
        if not found:
            continue
        omitted = [
            name
            for name, agonists in DETERRENT.items()
            if name in found and any(a in display.lower() for a in agonists)
        ]
        found = [f for f in found if f not in omitted]
        entry = codes.get(code)
        if entry is None:
            entry = codes[code] = {
                "display": display,
                "tty": tty or tty_of(display, known),
                "ingredients": found,
                "sources": [],
            }
            if omitted:
                entry["omitted_components"] = omitted
        elif entry["ingredients"] != found:
            conflicts.setdefault(code, []).append(f"{sid}: {display}")
            continue
        if sid not in entry["sources"]:
            entry["sources"].append(sid)
    for code in conflicts:
        conflicts[code].insert(0, f"{codes[code]['display']} ({', '.join(codes[code]['sources'])})")
        del codes[code]
    per_source = {sid: 0 for sid in sources}
    for entry in codes.values():
        for sid in entry["sources"]:
            per_source[sid] += 1
    return {
        "id": "rxnorm-ingredients",
        "title": "RxNorm product (SCD/SBD/GPCK/BPCK) and ingredient (IN) codes → catalogue "
        "ingredients",
        "system": RXNORM,
        "source": {
            "label": "Members of published value-set expansions (CDC opioid-CDS value sets; VSAC "
            "eCQM expansions via canvas-medical/canvas-plugins; PEDSnet code sets) and CPIC "
            "ingredient ids, each mapped to ingredients by its RxNorm name",
            "url": "https://vsac.nlm.nih.gov/",
            "derived_by": "cds_service/data/tools/build_rxnorm_ingredients.py",
            "notes": "tty is read from the shape of the RxNorm name (see tty_of) except for the "
            "CPIC IN rows; the PEDSnet OMOP rows carry no term type. Naloxone in an agonist "
            "combination is listed under omitted_components, not ingredients (not rescue "
            "naloxone). Codes whose sources disagree are left out (conflicts).",
        },
        "sources": {sid: {**meta, "codes": per_source[sid]} for sid, meta in sources.items()},
        "conflicts": conflicts,
        "codes": dict(sorted(codes.items(), key=lambda kv: int(kv[0]))),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("--canvas")
    ex.add_argument("--pedsnet")
    ex.add_argument("--cdc")
    ex.add_argument("--cpic-drug-sql")
    ex.add_argument("--cpic-commit", default="97f9e3bf4c490c5533afb02bcb9063fe3421c0f1")
    ex.add_argument("--cpic-date", default="2018-04-23")
    sub.add_parser("build")
    args = parser.parse_args(argv)
    if args.step == "extract":
        extract(args)
    else:
        write(build())


def write(table: dict[str, Any]) -> None:
    """Indented JSON, except one line per code so a refresh diffs line by line."""
    codes = table.pop("codes")
    head = json.dumps(table, indent=1)[:-2]
    lines = [f" {json.dumps(c)}: {json.dumps(e)}" for c, e in codes.items()]
    OUT.write_text(head + ',\n "codes": {\n' + ",\n".join(lines) + "\n }\n}\n", "utf-8")


if __name__ == "__main__":
    main()
