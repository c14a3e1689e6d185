"""The clinical policy: every threshold and design choice of the rules, as data.

The shipped ``data/policy.json`` is deep-merged with an optional deployment file
(``CDS_POLICY_FILE``) and validated against ``data/schemas/policy.schema.json`` once, at
start-up; a bad file stops start-up with a message naming the key. Rules read plain dicts.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from cds_service.clinical.valuesets import DATA_DIR, SCHEMA_DIR, AlternativeProduct, ValueSets
from cds_service.config import (
    DEVELOPMENT_CANONICAL_BASE,
    OVERRIDE_CODE_SYSTEM,
    TOPIC_CODE_SYSTEM,
    ConfigError,
    code_system_url,
)

POLICY_FILE = DATA_DIR / "policy.json"


class PolicyError(ConfigError):
    """The policy file cannot be used; start-up stops with this message."""


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PolicyError(f"policy file {path} unreadable: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"policy file {path} must hold a JSON object")
    return data


@dataclass(frozen=True)
class Policy:
    """Validated policy data plus the alternative product catalogue the regimens name."""

    data: dict[str, Any]
    valuesets: ValueSets | None = None
    canonical_base: str = DEVELOPMENT_CANONICAL_BASE  # CDS_CANONICAL_BASE, not a policy key

    @property
    def topic_system(self) -> str:
        """``source.topic.system`` of every card."""
        return code_system_url(self.canonical_base, TOPIC_CODE_SYSTEM)

    @property
    def override_system(self) -> str:
        """``system`` of every override reason a card offers."""
        return code_system_url(self.canonical_base, OVERRIDE_CODE_SYSTEM)

    @property
    def products(self) -> dict[str, AlternativeProduct]:
        return self.valuesets.alternative_products if self.valuesets else {}

    @property
    def group_titles(self) -> dict[str, str]:
        if self.valuesets is None:
            return {}
        return {name: g.title for name, g in self.valuesets.conditions.items()}

    @property
    def class_titles(self) -> dict[str, str]:
        """How a card names a drug class ("potent CYP1A2 inhibitor")."""
        return dict(self.data["alternatives"].get("class_titles") or {})

    @property
    def kind_titles(self) -> dict[str, str]:
        """How a card names an indication kind ("a seizure disorder")."""
        return dict(self.data["indication"].get("titles") or {})

    @property
    def cns_active_classes(self) -> frozenset[str]:
        return self.valuesets.cns_active_classes if self.valuesets else frozenset()

    def classes_of(self, ingredient: str) -> frozenset[str]:
        return self.valuesets.classes_of([ingredient]) if self.valuesets else frozenset()

    def diazepam_product(self, code: str) -> tuple[str, str, float] | None:
        product = self.valuesets.diazepam_products.get(code) if self.valuesets else None
        if product is None or product.mg_per_unit is None:
            return None
        return product.code, product.display, product.mg_per_unit

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    @property
    def beers_age(self) -> int:
        return int(self.data["age"]["beers_min_age"])

    @property
    def default_profile(self) -> str:
        return str(self.data["default_profile"])

    def is_older(self, age: int | None) -> bool:
        return age is not None and age >= self.beers_age


def load_policy(
    override_file: str | Path | None = None,
    valuesets: ValueSets | None = None,
    overrides: Mapping[str, Any] | None = None,
    canonical_base: str | None = None,
) -> Policy:
    data = _read(POLICY_FILE)
    if override_file:
        data = deep_merge(data, _read(Path(override_file)))
    if overrides:
        data = deep_merge(data, overrides)
    moved = sorted(k for k in ("topic_system", "override_system") if k in data)
    if moved:
        raise PolicyError(
            f"policy keys {moved} are no longer read: the code system URLs derive from "
            "CDS_CANONICAL_BASE ({base}/CodeSystem/cds-topic, {base}/CodeSystem/override-reason)"
        )
    schema = json.loads((SCHEMA_DIR / "policy.schema.json").read_text(encoding="utf-8"))
    errors = sorted(Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(root)"
        raise PolicyError(f"policy invalid at {where}: {errors[0].message}")
    d = data["duration"]
    if not d["cap_to_days"] <= d["ideal_days"] <= d["max_days"]:
        raise PolicyError("policy duration: need cap_to_days <= ideal_days <= max_days")
    products = valuesets.alternative_products if valuesets else {}
    if (
        valuesets is not None
        and valuesets.diazepam_products.get(data["dose"]["geriatric_suggested_code"]) is None
    ):
        raise PolicyError("policy dose/geriatric_suggested_code is not a diazepam product")
    if products:
        for scenario, drugs in data["alternatives"]["regimens"].items():
            for drug, regimen in drugs.items():
                product = products.get(regimen["code"])
                if product is None or product.ingredient != drug:
                    raise PolicyError(
                        f"policy alternatives/regimens/{scenario}/{drug}: code "
                        f"{regimen['code']} is not a {drug} product in alternative-products.json"
                    )
    return Policy(
        data=data,
        valuesets=valuesets,
        canonical_base=canonical_base or DEVELOPMENT_CANONICAL_BASE,
    )
