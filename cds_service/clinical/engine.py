"""The clinical engine behind the pipeline's ``Advisor`` protocol.

Built once per worker from settings (value sets, policy, card templates: all validated, so a
bad file stops start-up); per request it reads the diazepam orders, builds the patient record,
runs the pure rules and renders one card per finding, most urgent first.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from cds_service.clinical.cards import Template, load_templates, render
from cds_service.clinical.compose import (
    compose_order,
    copd_caution,
    dedupe_patient_cards,
    fit_budget,
    fold_actionless,
    name_decision_cards,
    note_context,
    one_decision_for_orders,
)
from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.orders import OrderReader
from cds_service.clinical.policy import Policy, load_policy
from cds_service.clinical.record import RecordBase, prepare_record, record_for
from cds_service.clinical.rules import RULES, Rule
from cds_service.clinical.rules.common import chronic_diazepam, effective_route, indication
from cds_service.clinical.valuesets import VALUESET_DIR, ValueSets, load_valuesets
from cds_service.config import ConfigError, Settings
from cds_service.fhir.prefetch import PatientData
from cds_service.hook_request import HookRequest

log = logging.getLogger(__name__)

T = TypeVar("T")
# Validated value sets and card templates by (kind, directory, every file's name, mtime and
# size). Validating them costs about 0.5 s, once per worker in production; the test suite
# builds over 500 apps from the same files. A changed, added or removed file changes the key,
# so an edited template is read and validated again. Loaded objects are only read.
_LOADED: dict[tuple[Any, ...], Any] = {}
_LOADED_MAX = 16


def _file_signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    stats = ((path.name, path.stat()) for path in sorted(directory.glob("*.json")))
    return tuple((name, stat.st_mtime_ns, stat.st_size) for name, stat in stats)


def _loaded_once(kind: str, directory: Path, load: Callable[[], T]) -> T:
    try:
        key = (kind, str(directory.resolve()), _file_signature(directory))
    except OSError:
        return load()  # unreadable: let the loader word the error
    found = _LOADED.get(key)
    if found is None:
        found = load()  # raises on a bad file: nothing is remembered
        if len(_LOADED) >= _LOADED_MAX:
            _LOADED.clear()
        _LOADED[key] = found
    return found  # type: ignore[no-any-return]


class Engine:
    """Implements ``cds_service.pipeline.Advisor``."""

    def __init__(
        self,
        valuesets: ValueSets,
        policy: Policy,
        templates: dict[str, Template],
        rules: Sequence[Rule] = RULES,
        profile: str | None = None,
    ) -> None:
        self.valuesets = valuesets
        self.policy = policy
        self.templates = templates
        self.rules = tuple(rules)
        self.reader = OrderReader(valuesets)
        self.default_profile = profile or policy.default_profile
        if self.default_profile not in policy["profiles"]:
            raise ConfigError(
                f"EHR profile {self.default_profile!r} unknown; "
                f"known: {', '.join(policy['profiles'])}"
            )
        self._severity = {name: i for i, name in enumerate(policy["indicator_order"])}

    @classmethod
    def from_settings(cls, settings: Settings) -> Engine:
        valuesets = _loaded_once("valuesets", VALUESET_DIR, load_valuesets)
        policy = load_policy(
            settings.policy_file or None,
            valuesets=valuesets,
            canonical_base=settings.resolved_canonical_base(),
        )
        cards_dir = Path(settings.cards_dir)
        templates = dict(
            _loaded_once("templates", cards_dir, lambda: load_templates(cards_dir))
        )
        return cls(valuesets, policy, templates, profile=settings.ehr_profile or None)

    # -- Advisor -------------------------------------------------------------------------
    def orders_in_scope(self, request: HookRequest) -> list[DiazepamOrder]:
        """At most ``policy["max_orders_per_request"]`` diazepam orders: advice on the first
        ones is what a clinician can read (cards are capped too), and a request with hundreds
        of diazepam drafts must not pin a worker. The rest are counted in the log."""
        limit = int(self.policy["max_orders_per_request"])
        orders, skipped = self.reader.scan(request, limit=limit)
        if skipped:
            log.warning(
                "advised on %d diazepam draft orders, %d more not advised "
                "(policy max_orders_per_request=%d)",
                len(orders),
                skipped,
                limit,
            )
        return orders

    def findings(
        self, order: DiazepamOrder, record: PatientRecord
    ) -> tuple[list[Finding], frozenset[str]]:
        found: list[Finding] = []
        disabled = set(self.policy["disabled_topics"])
        for rule in self.rules:
            found.extend(f for f in rule(order, record, self.policy) if f.topic not in disabled)
        found = note_context(copd_caution(found, record, self.policy), record)
        stated = indication(order, record, self.policy)
        if stated.source == "reason" and stated.kind in ("acute_spasm", "spasticity"):
            # the order states a musculoskeletal reason: "another indication" and "a Beers
            # exception" are not reasons this prescriber can give (review round 1 L4)
            for finding in found:
                finding.unfit_reasons |= {
                    "non-musculoskeletal-indication",
                    "beers-exception",
                    "chronic-indication",  # second review N10: not for a stated acute spasm
                }
        return compose_order(found, self.policy), record.unknown

    def advise(
        self,
        request: HookRequest,
        orders: Sequence[Any],
        data: PatientData,
        profile: str,
        timings: dict[str, float],
    ) -> list[dict[str, Any]]:
        started = time.perf_counter()
        # classify the patient's data and the drafts once; each order gets a cheap view
        base = prepare_record(data, self.valuesets, self.policy, request.draft_resources)
        records = [record_for(base, order, self.policy) for order in orders]
        orders, records = self._with_pended_beside(request, list(orders), records, base)
        per_order = [
            (order, *self.findings(order, record))
            for order, record in zip(orders, records, strict=True)
        ]
        if len(per_order) > 1 and not one_decision_for_orders(
            [
                (order, record, found)
                for (order, found, _), record in zip(per_order, records, strict=True)
            ],
            self.policy,
        ):
            _no_default_replacement(per_order, self.policy)
        ruled = time.perf_counter()
        timings["rules_ms"] = (ruled - started) * 1000
        if profile not in self.policy["profiles"]:
            profile = self.default_profile
        notes = self.policy["unknown_notes"]
        cards: list[tuple[int, int, dict[str, Any]]] = []
        for order, findings, unknown in per_order:
            for finding in findings:
                general = [
                    note["text"]
                    for key, note in notes.items()
                    if key in unknown and finding.topic in note["topics"]
                ]
                card = render(
                    finding,
                    self.templates[finding.topic],
                    order,
                    self.policy,
                    profile,
                    general,
                    unknown,
                )
                cards.append((self._severity.get(finding.indicator, 99), len(cards), card))
        cards.sort(key=lambda item: (item[0], item[1]))
        rendered = [card for _, _, card in cards]
        unique = dedupe_patient_cards(rendered, self.policy)
        result = fit_budget(fold_actionless(unique, self.policy), self.policy)
        # after folding: a folded line may still change the decision card's summary
        name_decision_cards(result, self.policy)
        _add_requester(result, request.user_id)
        timings["render_ms"] = (time.perf_counter() - ruled) * 1000
        return result

    def _with_pended_beside(
        self,
        request: HookRequest,
        orders: list[DiazepamOrder],
        records: list[PatientRecord],
        base: RecordBase,
    ) -> tuple[list[DiazepamOrder], list[PatientRecord]]:
        """A long-term user's oral orders selected beside other pended oral diazepam orders
        (order-select): those join, so the set is one keep-one decision as at order-sign
        (review round 8 F3: selecting the renewal beside a pended step offered a second step
        on the renewal). Anyone else, or a rescue product, is advised on alone."""
        if not orders or request.hook != "order-select":
            return orders, records
        oral = [
            o
            for o, r in zip(orders, records, strict=True)
            if effective_route(o, self.policy) == "oral" and chronic_diazepam(o, r, self.policy)
        ]
        if not oral:
            return orders, records
        known = {o.ref for o in orders}
        beside = [
            o
            for o in self.reader.pended_beside(request)
            if o.ref not in known and effective_route(o, self.policy) == "oral"
        ]
        if not beside:
            return orders, records
        extra = beside[: max(int(self.policy["max_orders_per_request"]) - len(orders), 0)]
        return orders + extra, records + [record_for(base, o, self.policy) for o in extra]


_REQUESTER_TYPES = ("Practitioner", "PractitionerRole", "Organization", "Patient", "RelatedPerson")


def _add_requester(cards: list[dict[str, Any]], user_id: str) -> None:
    """F.2a "orders ready to sign": every order a suggestion creates or rewrites names its
    requester (a rewrite keeps the pended order's own), the user who is ordering
    (``context.userId``), when that is a reference a requester may hold."""
    if not isinstance(user_id, str) or user_id.split("/")[0] not in _REQUESTER_TYPES:
        return
    for card in cards:
        for suggestion in card.get("suggestions") or []:
            for action in suggestion.get("actions") or []:
                resource = action.get("resource")
                if action.get("type") in ("create", "update") and isinstance(resource, dict):
                    resource.setdefault("requester", {"reference": user_id})


def _no_default_replacement(
    per_order: list[tuple[Any, list[Finding], Any]], policy: Policy
) -> None:
    """Several pended diazepam orders: a recommended "replace with X" on each would sign X
    twice (second review, case 20), so no replacement is pre-selected; each card says why."""
    for _, findings, _ in per_order:
        for finding in findings:
            replaced = [o for o in finding.options if o.kind == "replace" and o.recommended]
            for option in replaced:
                option.recommended = False
            if replaced:
                finding.notes.append(policy["compose"]["several_orders_note"])
