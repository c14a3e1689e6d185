"""What the image runs, rebuilt without Docker: the wheel the Dockerfile's build stage makes from
its own build context, plus the files its final stage copies, with its ENV — started as the
real ``diazepam-cds serve`` and spoken to over HTTP.

This catches what a Docker build would only show at deploy time: package data missing from
the wheel (schemas, value sets, migrations, policy), a runtime file read from the source
checkout that the image does not carry, a COPY or ENV path that does not line up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests

from cds_service.compare import compare, response_problems
from tests.deploy.deploy_files import (
    REPO,
    copy_sources,
    dockerfile_instructions,
    env_assignments,
    stages,
)
from tests.support.server import running_server

pytestmark = pytest.mark.slow

SCENARIO = REPO / "fixtures" / "scenarios" / "elderly-78-egfr45-no-baclofen.json"
BUILD, FINAL = stages(dockerfile_instructions())[0], stages(dockerfile_instructions())[-1]


def _copy_into(source: str, destination: Path) -> None:
    src = REPO / source
    if src.is_dir():
        shutil.copytree(
            src, destination, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    else:
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, destination)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A directory tree standing in for the image's file system."""
    work = tmp_path_factory.mktemp("image")
    context = work / "context"  # only what the build stage copies, as Docker would see it
    for source in copy_sources(BUILD):
        _copy_into(source, context / source.rstrip("/"))
    wheels = work / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("diazepam_cds-*.whl")
    site = work / "root" / "opt" / "venv" / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    root = work / "root"
    for ins in FINAL:
        if ins.keyword == "COPY" and "from" not in ins.flags():
            *sources, target = ins.args.split()
            for source in sources:
                _copy_into(source, root / target.lstrip("/"))
    return {"root": root, "site": site}


def _image_env(root: Path, site: Path) -> dict[str, str]:
    env = {}
    for key, value in env_assignments(FINAL).items():
        if key.startswith("CDS_"):
            env[key] = str(root / value.lstrip("/")) if value.startswith("/") else value
    Path(env["CDS_DATA_DIR"]).mkdir(parents=True, exist_ok=True)
    # The deployment's part: no issuers file here, so auth off for this check.
    env.update({"PYTHONPATH": str(site), "CDS_AUTH": "disabled", "CDS_PATIENT_HASH_KEY": "x" * 32})
    return env


def test_wheel_runs_the_service_with_only_what_the_image_carries(
    image_root: dict[str, Path], tmp_path: Path
) -> None:
    root, site = image_root["root"], image_root["site"]
    env = _image_env(root, site)
    # The code under test is the wheel's, not the source checkout's editable install.
    where = subprocess.run(
        [sys.executable, "-c", "import cds_service; print(cds_service.__file__)"],
        env={**os.environ, **env},
        cwd=env["CDS_DATA_DIR"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert Path(where.stdout.strip()).is_relative_to(site), where.stdout + where.stderr
    with running_server(tmp_path, env, workers=1) as server:
        health = requests.get(f"{server.base_url}/health", timeout=5)
        assert health.status_code == 200, server.log_text()
        assert health.json()["status"] == "ok"
        services = requests.get(f"{server.base_url}/cds-services", timeout=5).json()["services"]
        assert {s["id"] for s in services} == {"diazepam-order-select", "diazepam-order-sign"}
        # A full clinical answer, not just "it runs": a fixture scenario with everything
        # prefetched, judged as replay judges a deployment (topics, indicators, recommended
        # alternative, capped days, action types; never wording). Cards need the wheel's value
        # sets, policy and schemas and the image's card templates.
        scenario = json.loads(SCENARIO.read_text(encoding="utf-8"))
        answer = requests.post(
            f"{server.base_url}/cds-services/{scenario['service']}",
            json=scenario["request"],
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        cards = answer.json()["cards"]
        assert cards, server.log_text()
        assert not response_problems(answer.json())
        mismatches = compare(scenario["expected"], answer.json())
        assert not mismatches, [str(m) for m in mismatches]
        assert "Traceback" not in server.log_text()
    # The SQLite store (CDS_DATABASE_URL unset) lives in the data volume, not in the image.
    assert any(Path(env["CDS_DATA_DIR"]).iterdir())


def test_wheel_carries_the_package_data(image_root: dict[str, Path]) -> None:
    site = image_root["site"]
    source = REPO / "cds_service"
    wanted = [
        p.relative_to(REPO)
        for p in source.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    ]
    missing = [str(p) for p in wanted if not (site / p).is_file()]
    assert not missing, f"in cds_service/ but not in the wheel (pyproject package-data): {missing}"
    assert (site / "cds_service" / "cli.py").is_file()
