"""R3/R3x/R4: AGS Beers 2023 benzodiazepine entry; R5: three or more CNS-active drugs."""

from __future__ import annotations

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.common import (
    active_classes,
    chronic_diazepam,
    effective_route,
    hospice,
    indication,
    is_older,
    new_finding,
    pathway,
)

_WITHDRAWAL = frozenset({"alcohol_withdrawal", "benzodiazepine_withdrawal"})


def _beers_applies(
    order: DiazepamOrder, record: PatientRecord, policy: Policy, withdrawal_ok: bool = False
) -> bool:
    """Both Beers statements share who they are about: an older adult, off the *stated*
    safety pathway (seizure, tetanus, withdrawal, procedural, or a non-oral route with no
    musculoskeletal reason; a stated withdrawal still gets Table 3 when ``withdrawal_ok``),
    and not in hospice when the policy says so."""
    if not is_older(record, policy):
        return False
    if pathway(order, record, policy) == "safety":
        kind = indication(order, record, policy).kind
        route_ok = effective_route(order, policy) == "oral"
        if not (withdrawal_ok and kind in _WITHDRAWAL and route_ok):
            return False
    return not (policy["beers"]["hospice_suppresses"] and hospice(record))


def beers_benzodiazepine(
    order: DiazepamOrder, record: PatientRecord, policy: Policy
) -> list[Finding]:
    """R3/R3x/R4. Table 2's exceptions (seizure, withdrawal, GAD, ...) count only when the
    indication is stated (policy); Table 3 (falls/fracture, dementia, delirium) has none, so
    a syndrome raises the card whatever the indication, off the stated safety pathway."""
    rule = policy["beers"]
    if not _beers_applies(order, record, policy, withdrawal_ok=True):
        return []
    found = indication(order, record, policy)
    kind = found.kind
    syndromes = [g for g in rule["geriatric_syndromes"] if record.has(g)]
    at_risk = [g for g in rule["falls_risk_groups"] if record.has(g)] if not syndromes else []
    names = [policy.group_titles.get(g, g).lower() for g in syndromes + at_risk]
    stated = found.source in ("reason", "route")
    exception = kind in rule["exception_indications"] and (
        stated or not rule["exceptions_need_stated_indication"]
    )
    facts = {
        "age": record.age_years,
        "syndromes": " and ".join(names),
        "indication": kind.replace("_", " "),
    }
    audit = {
        "indication": kind,
        "indication_source": found.source,
        "syndromes": syndromes + at_risk,
    }
    if syndromes and (not exception or rule["syndromes_ignore_exceptions"]):
        withdrawal = exception and kind in ("alcohol_withdrawal", "benzodiazepine_withdrawal")
        return [
            new_finding(
                "beers-benzodiazepine",
                rule["withdrawal_syndrome_indicator"]
                if withdrawal
                else rule["geriatric_syndrome_indicator"],
                order,
                record,
                variant="syndrome_withdrawal" if withdrawal else "syndrome",
                facts=facts,
                audit=audit,
                # "avoid" to a long-term user is a taper, never a stop (review round 1 M3)
                notes=[rule["long_term_note"]]
                if chronic_diazepam(order, record, policy) is not None
                else [],
            )
        ]
    if exception:
        if rule["exception_card"] != "info":
            return []
        return [
            new_finding(
                "beers-benzodiazepine",
                rule["exception_indicator"],
                order,
                record,
                variant="exception",
                facts=facts,
                audit=audit,
            )
        ]
    # a long-term user: the starting dose is for new starts only (F.0-1, R13), and "avoid"
    # without "taper" reads as "stop" (review round 1 M3)
    long_term = chronic_diazepam(order, record, policy) is not None
    return [
        new_finding(
            "beers-benzodiazepine",
            rule["falls_risk_indicator"] if at_risk else rule["indicator"],
            order,
            record,
            variant="long_term" if long_term else ("falls_risk" if at_risk else "default"),
            facts=facts,
            audit=audit,
        )
    ]


def beers_cns_active(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> list[Finding]:
    rule = policy["beers"]
    if not _beers_applies(order, record, policy):
        return []
    kind = indication(order, record, policy).kind
    if not rule["cns_applies_to_exceptions"] and kind in rule["exception_indications"]:
        return []
    by_class = beers_cns_drugs_by_class(record, policy)
    listed = beers_cns_drugs(record, policy, by_class)
    if len(listed) < rule["cns_active_threshold"]:
        return []
    return [
        new_finding(
            "beers-cns-active",
            rule["indicator"],
            order,
            record,
            facts={"count": len(listed), "drugs": ", ".join(listed)},
            audit={"cns_count": len(listed), "cns_drugs": listed},
        )
    ]


def beers_cns_drugs_by_class(record: PatientRecord, policy: Policy) -> dict[str, set[str]]:
    return active_classes(record, policy["beers"]["cns_count_includes_drafts"])


def beers_cns_drugs(
    record: PatientRecord, policy: Policy, by_class: dict[str, set[str]] | None = None
) -> list[str]:
    """The distinct CNS-active ingredients Beers Table 5 counts (R5), the ordered drug too."""
    by_class = by_class if by_class is not None else beers_cns_drugs_by_class(record, policy)
    drugs: set[str] = set()
    for cls in policy.cns_active_classes:
        drugs |= by_class.get(cls, set())
    if policy["beers"]["cns_count_includes_ordered_drug"]:
        drugs.add("diazepam")
    return sorted(drugs)


def beers_cns_fires(order: DiazepamOrder, record: PatientRecord, policy: Policy) -> bool:
    """Whether R5 fires for this order (R16 then leaves the combination to it)."""
    return bool(beers_cns_active(order, record, policy))
