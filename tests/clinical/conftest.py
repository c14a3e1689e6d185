"""Shared fixtures of the clinical tests: the shipped value sets and policy, loaded once."""

from __future__ import annotations

import pytest

from cds_service.clinical.policy import Policy, load_policy
from cds_service.clinical.valuesets import ValueSets, load_valuesets


@pytest.fixture(scope="session")
def vs() -> ValueSets:
    return load_valuesets()


@pytest.fixture(scope="session")
def policy(vs: ValueSets) -> Policy:
    return load_policy(valuesets=vs)
