"""Recognise diazepam drafts and read what the rules need from them (``DiazepamOrder``).

Drafts are incomplete by nature (the sandbox sends a MedicationRequest without a drug, a
``category`` that is not a list, DSTU2 ``MedicationOrder``s), so everything is read from the
raw JSON with type checks; ``fhir.resources`` R4B validates the R4 resource (about 0.15 ms) only
to record whether the order is complete FHIR, which decides how the update suggestion is
checked. Identity is decided by code look-ups first (product, then ingredient 3322), text last.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from cds_service.clinical import dosing
from cds_service.clinical.models import Coding, DiazepamOrder
from cds_service.clinical.valuesets import RXNORM, DiazepamProduct, ValueSets
from cds_service.fhir.prefetch import prefetch_resources
from cds_service.hook_request import HookRequest, drafts_in_scope, unselected_drafts

_STRENGTH_RE = re.compile(r"(\d+(?:\.\d+)?)\s*mg\s*(/\s*ml)?", re.IGNORECASE)


def _today() -> date:
    return datetime.now(UTC).date()


def _codings(concept: Any) -> list[Mapping[str, Any]]:
    if not isinstance(concept, Mapping):
        return []
    return [c for c in concept.get("coding") or [] if isinstance(c, Mapping)]


def _concept_text(concept: Any) -> str:
    if not isinstance(concept, Mapping):
        return ""
    parts = [str(concept.get("text") or "")]
    parts += [str(c.get("display") or "") for c in _codings(concept)]
    return " ".join(p for p in parts if p)


def _has_unit(quantity: Mapping[str, Any]) -> bool:
    return any(isinstance(quantity.get(k), str) and quantity[k].strip() for k in ("unit", "code"))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _reference(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    """``medicationReference`` (DSTU2–R4) or R5 ``medication.reference``, else {}."""
    ref = resource.get("medicationReference")
    if isinstance(ref, Mapping):
        return ref
    r5 = resource.get("medication")
    if isinstance(r5, Mapping) and isinstance(r5.get("reference"), Mapping):
        return r5["reference"]  # type: ignore[no-any-return]
    return {}


def reference_index(resources: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """'Type/id' → resource, for resolving references within the request."""
    out: dict[str, Mapping[str, Any]] = {}
    for res in resources:
        if isinstance(res, Mapping) and res.get("resourceType") and res.get("id"):
            out[f"{res['resourceType']}/{res['id']}"] = res
    return out


class LazyReferenceIndex(Mapping[str, Mapping[str, Any]]):
    """``reference_index`` built on first look-up: only a ``medicationReference`` to another
    resource of the request needs it, and most orders carry a coded medication instead, so a
    75-resource chart is not indexed twice per call for nothing."""

    def __init__(self, resources: Callable[[], Iterable[Mapping[str, Any]]]) -> None:
        self._resources = resources
        self._index: dict[str, Mapping[str, Any]] | None = None

    def _built(self) -> dict[str, Mapping[str, Any]]:
        if self._index is None:
            self._index = reference_index(self._resources())
        return self._index

    def __getitem__(self, key: str) -> Mapping[str, Any]:
        return self._built()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


def _references(request: HookRequest) -> LazyReferenceIndex:
    """What a draft's references may point to: the drafts, the prefetch and the resources the
    service fetched; indexed only when a reference is looked up."""
    return LazyReferenceIndex(
        lambda: [
            *request.draft_resources,
            *prefetch_resources(request.prefetch),
            *request.extra_resources,
        ]
    )


class OrderReader:
    """Reads diazepam orders with the project's value sets (built once per worker)."""

    def __init__(self, valuesets: ValueSets, validate: bool = True) -> None:
        self.vs = valuesets
        self._model: Any = None
        if not validate:  # reads doses only (a running prescription): no FHIR model needed
            return
        try:
            from fhir.resources.R4B.medicationrequest import MedicationRequest

            self._model = MedicationRequest
            # first validation builds pydantic's validators; pay it at start-up, not on a click
            self._valid(
                {
                    "resourceType": "MedicationRequest",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/x"},
                    "medicationCodeableConcept": {"text": "x"},
                }
            )
        except ImportError:  # pragma: no cover - dependency is declared
            self._model = None

    # -- scope ---------------------------------------------------------------------------
    def orders_in_scope(self, request: HookRequest) -> list[DiazepamOrder]:
        return self.scan(request)[0]

    def scan(
        self, request: HookRequest, limit: int | None = None
    ) -> tuple[list[DiazepamOrder], int]:
        """The diazepam orders in scope (at most ``limit``, in request order) and how many more
        diazepam drafts there were: those are only identified, not read or validated, so a
        request with hundreds of drafts costs little past the limit."""
        drafts = drafts_in_scope(request)
        if not drafts:
            return [], 0
        refs = _references(request)
        orders: list[DiazepamOrder] = []
        skipped = 0
        for resource in drafts:
            if limit is not None and len(orders) >= limit:
                skipped += self._identify(resource, refs) is not None
                continue
            order = self.read(resource, refs, on=request.reference_date)
            if order is not None:
                orders.append(order)
        return orders, skipped

    def pended_beside(self, request: HookRequest) -> list[DiazepamOrder]:
        """At order-select, the diazepam orders pended but not selected (read, not advised
        on by themselves): a long-term user's several orders are one decision (review round 8
        F3: selecting the renewal beside a pended step offered a second step)."""
        refs = _references(request)
        found = (self.read(r, refs, on=request.reference_date) for r in unselected_drafts(request))
        return [order for order in found if order is not None]

    # -- one order -----------------------------------------------------------------------
    def read(
        self,
        resource: Mapping[str, Any],
        refs: Mapping[str, Mapping[str, Any]] | None = None,
        on: date | None = None,
    ) -> DiazepamOrder | None:
        """A DiazepamOrder if the resource orders diazepam, else None. ``on`` is the request's
        one reference date (ages, look-backs); without it, the order's own date."""
        refs = refs if refs is not None else {}  # not `or`: that would build a lazy index
        identity = self._identify(resource, refs)
        if identity is None:
            return None
        matched_by, product, code, display, med_text, strength = identity
        rtype = str(resource.get("resourceType"))
        order_date = on or (
            dosing.parse_date(resource.get("authoredOn"))
            or dosing.parse_date(resource.get("dateWritten"))
            or _today()
        )
        order = DiazepamOrder(
            ref=f"{rtype}/{resource.get('id')}" if resource.get("id") else rtype,
            resource_type=rtype,
            raw=dict(resource),
            order_date=order_date,
            matched_by=matched_by,
            code=code,
            display=display,
            subject=resource.get("subject") or resource.get("patient"),
        )
        if product is not None:
            order.route, order.route_source = product.route, "product"
            order.unit = product.unit
            order.mg_per_unit, order.mg_per_ml = product.mg_per_unit, product.mg_per_ml
        else:
            order.mg_per_unit, order.mg_per_ml, order.unit = strength
        dosages = [d for d in _as_list(resource.get("dosageInstruction")) if isinstance(d, Mapping)]
        if order.route == "unknown":
            route = self._dosage_route(dosages)
            if route:
                order.route, order.route_source = route, "dosage"
            else:
                route = self.vs.route_of_text(med_text)
                if route:
                    order.route, order.route_source = route, "text"
        if order.route == "oral" and order.unit is None and order.mg_per_unit is not None:
            order.unit = "tablet"
        self._read_dose(order, dosages)
        self._read_supply(order, resource, dosages)
        self._read_reason(order, resource)
        if rtype == "MedicationRequest":
            order.fhir_valid = self._valid(resource)
        return order

    def _valid(self, resource: Mapping[str, Any]) -> bool:
        if self._model is None:
            return False
        try:
            self._model.model_validate(resource)
        except Exception:  # pydantic ValidationError and anything a malformed draft raises
            return False
        return True

    def _identify(
        self, resource: Mapping[str, Any], refs: Mapping[str, Mapping[str, Any]]
    ) -> tuple[str, DiazepamProduct | None, str | None, str | None, str, tuple] | None:
        concepts: list[Mapping[str, Any]] = []
        ingredient_concepts: list[Mapping[str, Any]] = []
        strength: tuple[float | None, float | None, str | None] = (None, None, None)
        if isinstance(resource.get("medicationCodeableConcept"), Mapping):
            concepts.append(resource["medicationCodeableConcept"])
        r5 = resource.get("medication")  # R5: a CodeableReference
        if isinstance(r5, Mapping) and isinstance(r5.get("concept"), Mapping):
            concepts.append(r5["concept"])
        medication = self._resolve_medication(resource, refs)
        if medication is not None:
            if isinstance(medication.get("code"), Mapping):
                concepts.append(medication["code"])
            for ing in _as_list(medication.get("ingredient")):
                if not isinstance(ing, Mapping):
                    continue
                item = ing.get("itemCodeableConcept") or ing.get("item")
                if isinstance(item, Mapping):
                    ingredient_concepts.append(item)
                strength = self._ratio_strength(ing.get("strength")) or strength
        text = " ".join(_concept_text(c) for c in concepts + ingredient_concepts)
        if medication is None:  # unresolved reference: its display is all there is
            display = _reference(resource).get("display")
            if isinstance(display, str) and display.strip():
                concepts.append({"text": display})
                text = f"{text} {display}".strip()
        other_known = False
        for concept in concepts:
            for coding in _codings(concept):
                code = str(coding.get("code") or "")
                if coding.get("system") not in (RXNORM, None) or not code:
                    continue
                product = self.vs.diazepam_products.get(code)
                if product is not None:
                    return "code", product, code, product.display, text, strength
                if code == self.vs.diazepam_ingredient:
                    return (
                        "ingredient",
                        None,
                        code,
                        "diazepam",
                        text,
                        strength if strength[0] or strength[1] else self._text_strength(text),
                    )
                known = self.vs.code_ingredients.get(code)
                if known and "diazepam" not in known:
                    other_known = True
        for concept in ingredient_concepts:
            for coding in _codings(concept):
                if str(coding.get("code") or "") == self.vs.diazepam_ingredient:
                    return (
                        "ingredient",
                        None,
                        self.vs.diazepam_ingredient,
                        "diazepam",
                        text,
                        strength if strength[0] or strength[1] else self._text_strength(text),
                    )
        if other_known:
            return None  # a recognised code for another drug outranks a stray word
        if self.vs.is_diazepam_text(text):
            display = next((str(c.get("text")) for c in concepts if c.get("text")), None)
            return (
                "text",
                None,
                None,
                display or "diazepam",
                text,
                strength if strength[0] or strength[1] else self._text_strength(text),
            )
        return None

    @staticmethod
    def _resolve_medication(
        resource: Mapping[str, Any], refs: Mapping[str, Mapping[str, Any]]
    ) -> Mapping[str, Any] | None:
        ref = _reference(resource)
        target = ref.get("reference")
        if not isinstance(target, str) or not target:
            return None
        if target.startswith("#"):
            for contained in _as_list(resource.get("contained")):
                if isinstance(contained, Mapping) and contained.get("id") == target[1:]:
                    return contained
            return None
        key = "/".join(target.rstrip("/").split("/")[-2:])  # absolute URLs end in Type/id
        found = refs.get(key)
        return found if found is not None and found.get("resourceType") == "Medication" else None

    @staticmethod
    def _ratio_strength(ratio: Any) -> tuple[float | None, float | None, str | None] | None:
        if not isinstance(ratio, Mapping):
            return None
        top, bottom = ratio.get("numerator"), ratio.get("denominator")
        if not isinstance(top, Mapping):
            return None
        mg = dosing.num(top.get("value"))
        if mg is None or dosing.quantity_unit(top) not in dosing.MG_FACTORS:
            return None
        mg *= dosing.MG_FACTORS[dosing.quantity_unit(top) or "mg"]
        per = dosing.num(bottom.get("value")) if isinstance(bottom, Mapping) else 1.0
        unit = dosing.quantity_unit(bottom) if isinstance(bottom, Mapping) else None
        if not per:
            return None
        if unit == "mL":
            return None, mg / per, "mL"
        return mg / per, None, unit or "tablet"

    @staticmethod
    def _text_strength(text: str) -> tuple[float | None, float | None, str | None]:
        match = _STRENGTH_RE.search(text or "")
        if not match:
            return None, None, None
        value = float(match.group(1))
        if match.group(2):
            return None, value, "mL"
        return value, None, None

    def _dosage_route(self, dosages: Sequence[Mapping[str, Any]]) -> str | None:
        for dosage in dosages:
            route = dosage.get("route")
            for coding in _codings(route):
                hit = self.vs.route_codes.get(str(coding.get("code") or ""))
                if hit:
                    return hit
            hit = self.vs.route_of_text(_concept_text(route))
            if hit:
                return hit
        return None

    def _read_dose(self, order: DiazepamOrder, dosages: Sequence[Mapping[str, Any]]) -> None:
        best: tuple[float, float | None, float | None, float | None, bool] | None = None
        for dosage in dosages:
            qty = dosing.dose_quantity(dosage)
            amount = dosing.num(qty.get("value")) if qty else None
            amount = amount or None  # a zero dose is not a dose
            unit = dosing.quantity_unit(qty)
            if qty is not None and unit is None and order.unit and not _has_unit(qty):
                unit = order.unit  # a bare number: read it in the product's units; a unit we
                # cannot convert ('[lb_av]') stays unknown rather than becoming tablets
            mg = None
            units = None
            if amount is not None:
                mg = dosing.to_mg(amount, unit, order.mg_per_unit, order.mg_per_ml)
                units = (
                    amount
                    if unit == order.unit
                    else (
                        dosing.to_units(mg, order.unit, order.mg_per_unit, order.mg_per_ml)
                        if mg is not None
                        else None
                    )
                )
            prn = (
                bool(dosage.get("asNeededBoolean"))
                or isinstance(dosage.get("asNeededCodeableConcept"), Mapping)
                or dosage.get("asNeeded") is True  # R5
                or bool(dosage.get("asNeededFor"))
            )
            per_day = dosing.doses_per_day(dosage.get("timing"))
            cap = dosing.max_per_day(dosage)
            if cap is not None and (mg is not None or units is not None):
                cap_amount, cap_unit = cap
                cap_doses = None
                if cap_unit in dosing.MG_FACTORS and mg:
                    cap_doses = cap_amount * dosing.MG_FACTORS[cap_unit] / mg
                elif cap_unit in (None, order.unit) and units:
                    cap_doses = cap_amount / units
                if cap_doses is not None:
                    per_day = cap_doses if per_day is None else min(per_day, cap_doses)
            mg_day = mg * per_day if mg is not None and per_day is not None else None
            if mg_day is not None and not math.isfinite(mg_day):  # 1e308 mg x 3: unknown
                mg, per_day, mg_day = None, None, None
            key = mg_day if mg_day is not None else -1.0
            if best is None or key > best[0]:
                best = (key, mg, units, per_day, prn)
        if best is None:
            return
        _, order.mg_per_dose, order.units_per_dose, order.doses_per_day, order.prn = best
        if order.mg_per_dose is not None and order.doses_per_day is not None:
            order.mg_per_day = order.mg_per_dose * order.doses_per_day

    def _read_supply(
        self,
        order: DiazepamOrder,
        resource: Mapping[str, Any],
        dosages: Sequence[Mapping[str, Any]],
    ) -> None:
        dispense = resource.get("dispenseRequest")
        dispense = dispense if isinstance(dispense, Mapping) else {}
        expected = dosing.duration_days(dispense.get("expectedSupplyDuration"))
        qty = dispense.get("quantity")
        if isinstance(qty, Mapping):
            order.quantity = dosing.num(qty.get("value"))
            order.quantity_unit = dosing.quantity_unit(qty) or (
                order.unit if not (qty.get("code") or qty.get("unit")) else None
            )
            if order.quantity_unit is None and order.unit == "tablet":
                order.quantity_unit = (
                    "tablet" if str(qty.get("code", "")).upper() == "TAB" else None
                )
        repeats = dosing.num(dispense.get("numberOfRepeatsAllowed"))
        order.repeats = int(repeats) if repeats is not None else 0
        units_per_day = None
        if order.quantity is not None and order.doses_per_day:
            if order.quantity_unit == order.unit and order.units_per_dose:
                units_per_day = order.units_per_dose * order.doses_per_day
            elif order.quantity_unit in dosing.MG_FACTORS and order.mg_per_day:
                units_per_day = order.mg_per_day / dosing.MG_FACTORS[order.quantity_unit]
        bounds = None
        for dosage in dosages:
            bounds = dosing.bounds_days(dosage.get("timing"))
            if bounds:
                break
        result = dosing.supply_days(expected, order.quantity, units_per_day, bounds, order.repeats)
        if result is not None:
            order.days_supply, order.days_source = result

    def _read_reason(self, order: DiazepamOrder, resource: Mapping[str, Any]) -> None:
        r5_reasons = [r for r in _as_list(resource.get("reason")) if isinstance(r, Mapping)]
        concepts = [
            c
            for c in _as_list(resource.get("reasonCode"))
            + _as_list(resource.get("reasonCodeableConcept"))
            + [r.get("concept") for r in r5_reasons]
            if isinstance(c, Mapping)
        ]
        codings = []
        groups: set[str] = set()
        texts = []
        for concept in concepts:
            for coding in _codings(concept):
                if coding.get("code"):
                    codings.append(
                        Coding(coding.get("system"), str(coding["code"]), coding.get("display"))
                    )
            groups |= self.vs.groups_of_concept(concept)
            if concept.get("text"):
                texts.append(str(concept["text"]))
        refs = []
        for ref in _as_list(resource.get("reasonReference")) + [
            r.get("reference") for r in r5_reasons
        ]:
            if isinstance(ref, Mapping) and isinstance(ref.get("reference"), str):
                refs.append("/".join(ref["reference"].split("/")[-2:]))
            if isinstance(ref, Mapping) and ref.get("display"):
                texts.append(str(ref["display"]))
                if not ref.get("reference"):
                    groups |= self.vs.groups_of_text(str(ref["display"]))
        order.reason_codings = tuple(codings)
        order.reason_groups = frozenset(groups)
        order.reason_text = "; ".join(texts) or None
        order.reason_references = tuple(refs)
