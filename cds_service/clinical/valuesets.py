"""Value sets loaded once per worker and turned into dictionary look-ups for the hot path.

Rules never scan lists: a medication is classified by one dict look-up per coding (RxNorm code
→ ingredients), then, only if no code is known, by a single regular expression over its text.
Conditions are matched by SNOMED code (set membership) or by ICD-10-CM prefix (a header code
such as ``G35`` covers its family); dots are stripped before comparing, as VSAC files do.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
from jsonschema import Draft202012Validator

from cds_service.config import ConfigError

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
ICD10_SYSTEMS = ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10")

DATA_DIR = Path(str(resources.files("cds_service") / "data"))
VALUESET_DIR = DATA_DIR / "valuesets"
SCHEMA_DIR = DATA_DIR / "schemas"

# RxNorm product/ingredient code → ingredients, built at development time from published
# value-set expansions (each code names its sources; tools/build_rxnorm_ingredients.py)
RXNORM_TABLE = "rxnorm-ingredients.json"


# Text-match memo (per ValueSets, i.e. per worker): EHRs repeat the same few medication and
# problem-list texts, and the regular expressions were ~2 ms of the large benchmark call.
# Bounded by entries and by text length (texts come from callers); cleared when full.
TEXT_CACHE_MAX_ENTRIES = 4096
TEXT_CACHE_MAX_CHARS = 1024


class ValueSetError(ConfigError):
    """A shipped value set file is missing or malformed: start-up stops with this message."""


@dataclass(frozen=True)
class DiazepamProduct:
    code: str
    display: str
    route: str
    tty: str
    unit: str | None = None
    mg_per_unit: float | None = None
    mg_per_ml: float | None = None


@dataclass(frozen=True)
class AlternativeProduct:
    code: str
    ingredient: str
    display: str
    mg_per_unit: float
    unit: str


@dataclass(frozen=True)
class ConditionGroup:
    name: str
    title: str
    snomed: frozenset[str]
    icd10_prefixes: tuple[str, ...]
    text: tuple[str, ...]
    text_exclude: tuple[str, ...] = ()  # a text naming one of these is not this group


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueSetError(f"value set file {path} unreadable: {exc}") from exc


def normalise_icd(code: str) -> str:
    return code.replace(".", "").upper().strip()


def _word_pattern(words: Iterable[str]) -> re.Pattern[str]:
    ordered = sorted({w.lower() for w in words}, key=len, reverse=True)
    return re.compile(r"\b(" + "|".join(re.escape(w) for w in ordered) + r")\b", re.IGNORECASE)


@dataclass
class ValueSets:
    """Every code look-up the engine needs, built once from ``cds_service/data/valuesets``."""

    diazepam_products: dict[str, DiazepamProduct]
    diazepam_ingredient: str
    diazepam_brands: tuple[str, ...]
    alternative_products: dict[str, AlternativeProduct]
    ingredient_classes: dict[str, frozenset[str]]
    cns_active_classes: frozenset[str]
    code_ingredients: dict[str, frozenset[str]]
    brands: dict[str, str]
    conditions: dict[str, ConditionGroup]
    kidney: dict[str, dict[str, Any]]
    route_codes: dict[str, str] = field(default_factory=dict)
    route_words: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    _name_re: re.Pattern[str] | None = None
    _diazepam_text_re: re.Pattern[str] | None = None
    _snomed_index: dict[str, frozenset[str]] = field(default_factory=dict)
    _icd_index: dict[str, frozenset[str]] = field(default_factory=dict)
    _icd_lengths: tuple[int, ...] = ()
    _text_re: re.Pattern[str] | None = None
    _text_groups: dict[str, frozenset[str]] = field(default_factory=dict)
    _text_excludes: dict[str, re.Pattern[str]] = field(default_factory=dict)
    _route_re: re.Pattern[str] | None = None
    _text_cache: dict[tuple[str, str], frozenset[str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def _memo(self, kind: str, text: str, match: Callable[[str], frozenset[str]]) -> frozenset[str]:
        """``match(text.lower())``, remembered by (kind, lower-cased text). The patterns are
        case-insensitive, so the lower-cased text is the key and the input alike: equal keys
        can never give different answers. Plain dict operations only (atomic under the GIL,
        so the threads of a worker may share it; a lost entry is merely recomputed)."""
        lowered = text.lower()
        if len(lowered) > TEXT_CACHE_MAX_CHARS:
            return match(lowered)
        key = (kind, lowered)
        found = self._text_cache.get(key)
        if found is None:
            found = match(lowered)
            if len(self._text_cache) >= TEXT_CACHE_MAX_ENTRIES:
                self._text_cache.clear()
            self._text_cache[key] = found
        return found

    def __post_init__(self) -> None:
        self._route_re = _word_pattern(self.route_words) if self.route_words else None
        names = list(self.ingredient_classes) + list(self.brands)
        self._name_re = _word_pattern(names)
        self._diazepam_text_re = _word_pattern(["diazepam", *self.diazepam_brands])
        snomed: dict[str, set[str]] = {}
        icd: dict[str, set[str]] = {}
        text: dict[str, set[str]] = {}
        for group in self.conditions.values():
            for code in group.snomed:
                snomed.setdefault(code, set()).add(group.name)
            for prefix in group.icd10_prefixes:
                icd.setdefault(normalise_icd(prefix), set()).add(group.name)
            for word in group.text:
                text.setdefault(word.lower(), set()).add(group.name)
        self._snomed_index = {k: frozenset(v) for k, v in snomed.items()}
        self._icd_index = {k: frozenset(v) for k, v in icd.items()}
        self._icd_lengths = tuple(sorted({len(k) for k in icd}))
        self._text_groups = {k: frozenset(v) for k, v in text.items()}
        self._text_excludes = {
            g.name: re.compile(
                r"\b(" + "|".join(re.escape(w) for w in g.text_exclude) + ")", re.IGNORECASE
            )
            for g in self.conditions.values()
            if g.text_exclude
        }
        ordered = sorted(text, key=len, reverse=True)
        # keywords are word starts ("pregnan", "convulsi"), so only the left edge is anchored
        self._text_re = re.compile(
            r"\b(" + "|".join(re.escape(w) for w in ordered) + ")", re.IGNORECASE
        )

    # -- medications -------------------------------------------------------------------------
    def ingredients_in_text(self, text: str) -> frozenset[str]:
        return self._memo("ingredients", text, self._match_ingredients)

    def _match_ingredients(self, text: str) -> frozenset[str]:
        assert self._name_re is not None
        found = set()
        for match in self._name_re.finditer(text):
            word = match.group(1).lower()
            found.add(self.brands.get(word, word))
        return frozenset(found)

    def ingredients_of(
        self, codings: Iterable[Mapping[str, Any]], text: str = ""
    ) -> frozenset[str]:
        """Ingredients of a medication concept: RxNorm code index first, names second."""
        found: set[str] = set()
        texts = [text] if text else []
        for coding in codings:
            code = str(coding.get("code") or "")
            system = coding.get("system")
            if code and system in (RXNORM, None):
                hit = self.code_ingredients.get(code)
                if hit:
                    found |= hit
            if coding.get("display"):
                texts.append(str(coding["display"]))
        if not found and texts:
            found |= self.ingredients_in_text(" ".join(texts))
        return frozenset(found)

    def classes_of(self, ingredients: Iterable[str]) -> frozenset[str]:
        out: set[str] = set()
        for name in ingredients:
            out |= self.ingredient_classes.get(name, frozenset())
        return frozenset(out)

    def is_diazepam_text(self, text: str) -> bool:
        assert self._diazepam_text_re is not None
        return bool(text) and bool(self._diazepam_text_re.search(text))

    def route_of_text(self, text: str) -> str | None:
        if not text or self._route_re is None:
            return None
        match = self._route_re.search(text)
        return self.route_words.get(match.group(1).lower()) if match else None

    # -- conditions --------------------------------------------------------------------------
    def groups_of_coding(self, system: str | None, code: str) -> frozenset[str]:
        if not code:
            return frozenset()
        if system == SNOMED:
            return self._snomed_index.get(code, frozenset())
        if system in ICD10_SYSTEMS:
            # prefix matching over every header length: remembered per code (value sets are
            # fixed for the worker's life; the text memo's bound and rules apply)
            if len(code) > TEXT_CACHE_MAX_CHARS:
                return self._icd_groups(code)
            key = ("icd10", code)
            found = self._text_cache.get(key)
            if found is None:
                found = self._icd_groups(code)
                if len(self._text_cache) >= TEXT_CACHE_MAX_ENTRIES:
                    self._text_cache.clear()
                self._text_cache[key] = found
            return found
        return frozenset()

    def _icd_groups(self, code: str) -> frozenset[str]:
        norm = normalise_icd(code)
        out: set[str] = set()
        for length in self._icd_lengths:
            if length > len(norm):
                break
            hit = self._icd_index.get(norm[:length])
            if hit:
                out |= hit
        return frozenset(out)

    def groups_of_text(self, text: str) -> frozenset[str]:
        if not text:
            return frozenset()
        return self._memo("groups", text, self._match_groups)

    def _match_groups(self, text: str) -> frozenset[str]:
        assert self._text_re is not None
        out: set[str] = set()
        for match in self._text_re.finditer(text):
            out |= self._text_groups.get(match.group(1).lower(), frozenset())
        for name in out & self._text_excludes.keys():
            if self._text_excludes[name].search(text):
                out.discard(name)  # "at risk for falls" is falls_risk, not falls
        return frozenset(out)

    def groups_of_concept(self, concept: Mapping[str, Any] | None) -> frozenset[str]:
        """Groups of a CodeableConcept: codes decide; text is used only when no code matched."""
        if not isinstance(concept, Mapping):
            return frozenset()
        found: set[str] = set()
        displays: list[str] = []
        for coding in concept.get("coding") or []:
            if not isinstance(coding, Mapping):
                continue
            found |= self.groups_of_coding(coding.get("system"), str(coding.get("code") or ""))
            if coding.get("display"):
                displays.append(str(coding["display"]))
        if not found:
            text = " ".join([str(concept.get("text") or ""), *displays])
            found |= self.groups_of_text(text)
        return frozenset(found)


# -- loading ---------------------------------------------------------------------------------


@cache
def _schema_validator(name: str) -> Draft202012Validator:
    schema = _load_json(SCHEMA_DIR / name)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@cache
def _fast_validator(name: str) -> Callable[[Any], Any] | None:
    """fastjsonschema's compiled check (the RxNorm table has thousands of entries: ~10 ms
    instead of ~0.4 s per worker start). It only says "valid"; jsonschema words a refusal."""
    schema = dict(_load_json(SCHEMA_DIR / name))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    try:
        return fastjsonschema.compile(schema, use_formats=False)  # type: ignore[no-any-return]
    except fastjsonschema.JsonSchemaDefinitionException:
        return None


def _validated(path: Path, schema: str) -> dict[str, Any]:
    data = _load_json(path)
    _schema_validator(schema)  # the schema itself is checked whichever path decides
    fast = _fast_validator(schema)
    if fast is not None:
        try:
            fast(data)
            return data  # type: ignore[no-any-return]
        except fastjsonschema.JsonSchemaException:
            pass
    errors = sorted(_schema_validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise ValueSetError(f"value set {path.name}: {where}: {errors[0].message}")
    return data


def _fhir_codes(path: Path) -> list[dict[str, Any]]:
    data = _load_json(path)
    if data.get("resourceType") != "ValueSet" or "expansion" not in data:
        raise ValueSetError(f"{path.name} is not a FHIR ValueSet with an expansion")
    return list(data["expansion"].get("contains") or [])


def load_valuesets(directory: Path | None = None) -> ValueSets:
    base = directory or VALUESET_DIR
    diaz = _validated(base / "diazepam-products.json", "valueset.schema.json")
    alts = _validated(base / "alternative-products.json", "valueset.schema.json")
    ingr = _validated(base / "ingredients.json", "ingredients.schema.json")
    cond = _validated(base / "conditions.json", "conditions.schema.json")
    kidney = _validated(base / "kidney-loinc.json", "valueset.schema.json")
    routes = _validated(base / "route-codes.json", "valueset.schema.json")
    rxnorm = _validated(base / RXNORM_TABLE, "rxnorm-ingredients.schema.json")

    products = {
        code: DiazepamProduct(
            code=code,
            display=e["display"],
            route=e["route"],
            tty=e.get("tty", "SCD"),
            unit=e.get("unit"),
            mg_per_unit=e.get("mg_per_unit"),
            mg_per_ml=e.get("mg_per_ml"),
        )
        for code, e in diaz["codes"].items()
    }
    alternatives = {
        code: AlternativeProduct(
            code=code,
            ingredient=e["ingredient"],
            display=e["display"],
            mg_per_unit=float(e["mg_per_unit"]),
            unit=e["unit"],
        )
        for code, e in alts["codes"].items()
    }
    classes = {name: frozenset(e["classes"]) for name, e in ingr["ingredients"].items()}
    brands = {k.lower(): v for k, v in ingr.get("brands", {}).items()}

    code_ingredients: dict[str, frozenset[str]] = {}
    for code, entry in rxnorm["codes"].items():
        unknown = set(entry["ingredients"]) - set(classes)
        if unknown:
            raise ValueSetError(
                f"{RXNORM_TABLE}: code {code} names {sorted(unknown)}, not in ingredients.json"
            )
        code_ingredients[code] = frozenset(entry["ingredients"])
    for code in products:
        code_ingredients[code] = frozenset({"diazepam"})
    for code, alt in alternatives.items():
        code_ingredients[code] = frozenset({alt.ingredient})
    for name, entry in ingr["ingredients"].items():
        if entry.get("rxcui_in"):
            code_ingredients[entry["rxcui_in"]] = frozenset({name})

    groups: dict[str, ConditionGroup] = {}
    for name, g in cond["groups"].items():
        snomed = set(g.get("snomed", []))
        icd = list(g.get("icd10_prefixes", []))
        spec = g.get("from_valueset")
        if spec:
            files = spec.get("files") or [spec["file"]]
            pattern = (
                re.compile(spec["display_matches"], re.I) if "display_matches" in spec else None
            )
            excluded = {normalise_icd(str(c)) for c in spec.get("exclude_codes", [])}
            excluded_prefixes = tuple(
                normalise_icd(str(c)) for c in spec.get("exclude_icd10_prefixes", [])
            )
            for rel in files:
                for item in _fhir_codes(base / rel):
                    if pattern and not pattern.search(item.get("display", "")):
                        continue
                    norm = normalise_icd(str(item["code"]))
                    if norm in excluded or (
                        item.get("system") in ICD10_SYSTEMS and norm.startswith(excluded_prefixes)
                    ):
                        continue
                    if item.get("system") == SNOMED:
                        snomed.add(str(item["code"]))
                    elif item.get("system") in ICD10_SYSTEMS:
                        icd.append(str(item["code"]))
        groups[name] = ConditionGroup(
            name=name,
            title=g["title"],
            snomed=frozenset(snomed),
            icd10_prefixes=tuple(icd),
            text=tuple(g.get("text", [])),
            text_exclude=tuple(g.get("text_exclude", [])),
        )

    return ValueSets(
        diazepam_products=products,
        diazepam_ingredient=diaz["ingredient"]["code"],
        diazepam_brands=tuple(diaz.get("brands", [])),
        alternative_products=alternatives,
        ingredient_classes=classes,
        cns_active_classes=frozenset(ingr["cns_active_classes"]),
        code_ingredients=code_ingredients,
        brands=brands,
        conditions=groups,
        kidney=kidney["codes"],
        route_codes={code: e["route"] for code, e in routes["codes"].items()},
        route_words={k.lower(): v for k, v in routes.get("words", {}).items()},
        sources={
            d["id"]: d["source"].get("url", d["source"]["label"])
            for d in (diaz, alts, ingr, cond, kidney, routes, rxnorm)
        },
    )
