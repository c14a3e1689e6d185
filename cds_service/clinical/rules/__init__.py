"""The rules, one pure function each: ``(order, record, policy) -> list[Finding]``.

No HTTP, no Flask, no I/O. The order of ``RULES`` is the order cards are shown within one
indicator level (the engine sorts critical → warning → info).
"""

from __future__ import annotations

from collections.abc import Callable

from cds_service.clinical.models import DiazepamOrder, Finding, PatientRecord
from cds_service.clinical.policy import Policy
from cds_service.clinical.rules.alternatives import muscle_relaxant_alternative
from cds_service.clinical.rules.beers import beers_benzodiazepine, beers_cns_active
from cds_service.clinical.rules.cns_combination import cns_depressant_combination
from cds_service.clinical.rules.contraindication import diazepam_contraindication
from cds_service.clinical.rules.dose import dose_limit
from cds_service.clinical.rules.duration import duration_limit
from cds_service.clinical.rules.indication import indication_missing
from cds_service.clinical.rules.interaction import diazepam_interaction
from cds_service.clinical.rules.opioid import opioid_benzodiazepine
from cds_service.clinical.rules.pregnancy import pregnancy_lactation
from cds_service.clinical.rules.substance import substance_use_risk
from cds_service.clinical.rules.taper import taper_required

Rule = Callable[[DiazepamOrder, PatientRecord, Policy], list[Finding]]

RULES: tuple[Rule, ...] = (
    diazepam_contraindication,
    opioid_benzodiazepine,
    substance_use_risk,
    taper_required,
    beers_benzodiazepine,
    beers_cns_active,
    muscle_relaxant_alternative,
    duration_limit,
    dose_limit,
    cns_depressant_combination,
    diazepam_interaction,
    pregnancy_lactation,
    indication_missing,
)

__all__ = ["RULES", "Rule"]
