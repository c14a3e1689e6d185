"""Validate FHIR resources as a given FHIR version with the matching ``fhir.resources`` models.

R4 uses ``fhir.resources.R4B`` (MedicationRequest is the same in R4 and R4B), STU3
``fhir.resources.STU3`` and R5 the top-level package, all from our venv (fhir.resources 8).
DSTU2 models exist only up to fhir.resources 7.1, kept in ``.venv-fhir-dstu2``
(``make test`` creates it); DSTU2 resources are validated there in one subprocess per call.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import REPO

DSTU2_VENV = Path(os.environ.get("CDS_TEST_DSTU2_VENV", REPO / ".venv-fhir-dstu2"))
DSTU2_HINT = "run `make test` (creates .venv-fhir-dstu2 with fhir.resources==7.1.0)"
_PACKAGES = {"R4": "fhir.resources.R4B", "STU3": "fhir.resources.STU3", "R5": "fhir.resources"}

# The DSTU2 models of fhir.resources 7.1 allow unknown elements (pydantic v1 Extra.allow);
# they are made to refuse them, as the R4/STU3/R5 models do, so an element DSTU2 does not have
# (``intent``, ``doseAndRate``) is an error.
_DSTU2_SCRIPT = r"""
import importlib, json, sys
from pydantic.v1 import Extra
from fhir.resources.DSTU2 import fhirabstractmodel
fhirabstractmodel.FHIRAbstractModel.__config__.extra = Extra.forbid
out = []
for resource in json.load(sys.stdin):
    name = resource.get("resourceType", "")
    try:
        module = importlib.import_module("fhir.resources.DSTU2." + name.lower())
        getattr(module, name).parse_obj(resource)
        out.append(None)
    except Exception as exc:
        out.append(f"{name}: {str(exc)[:500]}")
print(json.dumps(out))
"""


def _model(package: str, name: str) -> Any:
    return getattr(importlib.import_module(f"{package}.{name.lower()}"), name)


def validation_errors(version: str, resources: list[dict[str, Any]]) -> list[str | None]:
    """One entry per resource: None when it is valid FHIR of ``version``, else the error."""
    if version == "DSTU2":
        python = DSTU2_VENV / "bin" / "python"
        if not python.is_file():
            if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
                pytest.fail(f"DSTU2 models not installed: {DSTU2_HINT}")
            pytest.skip(f"DSTU2 models not installed: {DSTU2_HINT}")
        done = subprocess.run(
            [str(python), "-c", _DSTU2_SCRIPT],
            input=json.dumps(resources),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        return json.loads(done.stdout)  # type: ignore[no-any-return]
    package = _PACKAGES[version]
    out: list[str | None] = []
    for resource in resources:
        name = str(resource.get("resourceType"))
        try:
            _model(package, name).model_validate(resource)
            out.append(None)
        except Exception as exc:  # pydantic ValidationError, or no such resource type
            out.append(f"{name}: {str(exc)[:500]}")
    return out
