"""The soak script keeps working: a short run of ``scripts/soak.py`` as the README documents it
(it starts its own server with ``CDS_LOG_LEVEL=WARNING``), with its report checked.

The 10-minute soak itself is not part of the suite; this run only proves the script still
starts a server, drives all three kinds of traffic and measures every worker's memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import REPO

SOAK = REPO / "scripts" / "soak.py"


@pytest.mark.slow
def test_a_short_soak_runs_and_reports(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    result = subprocess.run(
        # a tenth of the measured capacity: the point is that the script works, and the
        # suite's other tests share the machine
        [sys.executable, str(SOAK), "--duration", "20", "--probe", "2", "--clients", "4"]
        + ["--load", "0.1", "--json", str(report_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_path.read_text(encoding="utf-8"))
    assert report["errors"] == 0 and report["errors_by_kind"] == {}
    statuses = report["statuses"]
    # every kind of traffic went through, and only 200s
    assert {s.split()[0] for s in statuses} == {"hook", "feedback", "discovery"}
    assert all(s.endswith(" 200") for s in statuses), statuses
    assert report["requests"] == sum(statuses.values()) > 20
    assert report["capacity_rps"] > 0 and report["achieved_rps"] > 0
    # both workers measured at start and end, neither replaced
    workers = report["workers"]
    assert len(workers) == 2, workers
    for worker in workers:
        assert worker["note"] == "", worker
        assert worker["rss_start_mib"] > 0 and worker["rss_end_mib"] > 0
        assert worker["growth_mib"] == pytest.approx(
            worker["rss_end_mib"] - worker["rss_start_mib"], abs=0.11
        )
