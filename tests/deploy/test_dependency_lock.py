"""Issue 17 item 11: dependency floors above known advisories, one lock file that make, CI and
the Dockerfile install from, and an audit step whose policy cannot make CI flaky."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
LOCK = REPO / "constraints.txt"

# The advisories named in the issue: the first version without them.
ADVISORY_FLOORS = {
    "orjson": "3.9.15",  # recursion in loads (parses untrusted bodies)
    "flask-cors": "6.0",
    "requests": "2.32.4",
    "cryptography": "44.0.1",
    "tqdm": "4.66.3",
    "werkzeug": "3.0.6",
}


def pins() -> dict[str, Version]:
    found = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        assert version, f"constraints.txt pins exactly: {line!r}"
        found[canonicalize_name(name)] = Version(version)
    return found


def requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = list(project["dependencies"])
    for extra in ("postgres", "test", "bench", "audit"):
        listed += project["optional-dependencies"][extra]
    return [Requirement(text) for text in listed]


@pytest.mark.parametrize(("name", "floor"), sorted(ADVISORY_FLOORS.items()))
def test_floors_exclude_versions_with_known_advisories(name: str, floor: str) -> None:
    by_name = {canonicalize_name(r.name): r for r in requirements()}
    requirement = by_name.get(name)
    assert requirement is not None, f"{name} must be a declared dependency with a floor"
    assert not requirement.specifier.contains(Version(_below(floor))), (
        f"{name}: {requirement.specifier} still allows versions before {floor}"
    )
    assert pins()[name] >= Version(floor)


def _below(version: str) -> str:
    """A version just below ``version`` (for the floor check)."""
    parts = [int(p) for p in version.split(".")]
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] > 0:
            parts[i] -= 1
            return ".".join(map(str, parts)) + ".999"
    raise ValueError(version)


def test_lock_pins_every_declared_dependency_within_its_range() -> None:
    locked = pins()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not pinned in constraints.txt"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{name}=={locked[name]} is outside {requirement.specifier}"
        )


def test_make_ci_and_the_image_install_from_the_lock() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in makefile.splitlines() if "pip install" in line and "-e" in line]
    assert installs and all("-c $(LOCK)" in line for line in installs), installs
    assert re.search(r"^LOCK\s*:?=\s*constraints\.txt$", makefile, re.MULTILINE)
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^COPY [^\n]*constraints\.txt", dockerfile, re.MULTILINE)
    assert "pip install --no-cache-dir -c constraints.txt" in dockerfile
    assert "!constraints.txt" in (REPO / ".dockerignore").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "make audit" in ci and "make test" in ci


def _audit_module():
    spec = importlib.util.spec_from_file_location("audit_deps", REPO / "scripts/audit_deps.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["audit_deps"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_audit_fails_only_on_an_advisory_with_a_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    audit = _audit_module()
    fixed = {"id": "GHSA-x", "aliases": ["CVE-1"], "fix_versions": ["2.32.4"]}
    unfixed = {"id": "GHSA-y", "aliases": [], "fix_versions": []}
    report = {
        "dependencies": [
            {"name": "requests", "version": "2.31.0", "vulns": [fixed]},
            {"name": "somelib", "version": "1.0", "vulns": [unfixed]},
            {"name": "quiet", "version": "1.0", "vulns": []},
            {"name": "unknown", "skip_reason": "Dependency not found on PyPI"},
        ]
    }
    verdict = audit.judge(report)
    assert verdict.exit_code == 1 and "requests 2.31.0" in verdict.failing[0]
    report["dependencies"].pop(0)
    verdict = audit.judge(report)
    assert verdict.exit_code == 0 and verdict.unfixed and verdict.unaudited
    monkeypatch.setenv("CDS_AUDIT_STRICT", "1")
    assert audit.judge(report).exit_code == 1


def test_audit_without_an_answer_warns_and_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    audit = _audit_module()
    monkeypatch.setattr(audit, "run_pip_audit", lambda lock: (None, "connection refused"))
    assert audit.main([str(LOCK)]) == 0
    assert "NOT AUDITED" in capsys.readouterr().err
