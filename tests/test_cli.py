"""``diazepam-cds serve`` refuses a bad configuration with one clear line, before forking."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXE = Path(sys.executable).with_name("diazepam-cds")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CDS_AUTH": "required"}, "no client is trusted"),
        ({"CDS_AUTH": "disabled", "CDS_POLICY_FILE": "{policy}"}, "policy"),
        ({"CDS_AUTH": "disabled", "CDS_CARDS_DIR": "{empty}"}, "links.json"),
        ({"CDS_PORT": "eighty"}, "CDS_PORT"),
        # production start-up without the site's code system base (F.2a override reasons)
        ({"CDS_AUTH": "disabled", "CDS_CANONICAL_BASE": ""}, "CDS_CANONICAL_BASE is not set"),
        ({"CDS_AUTH": "disabled", "CDS_CANONICAL_BASE": "cds.hospital"}, "CDS_CANONICAL_BASE"),
    ],
)
def test_serve_stops_on_bad_configuration_with_one_line(tmp_path, env, expected):
    policy = tmp_path / "policy.json"
    policy.write_text('{"duration": {"ideal_days": "seven"}', encoding="utf-8")  # broken JSON
    (tmp_path / "empty").mkdir()
    full_env = {
        "PATH": "/usr/bin:/bin",
        "CDS_DATA_DIR": str(tmp_path / "data"),
        # what production requires before anything else is checked (issue 17 item 2, 5)
        "CDS_PUBLIC_BASE_URL": "https://cds.example.org",
        "CDS_PATIENT_HASH_KEY": "test-only-key",
        "CDS_CANONICAL_BASE": "https://cds.test.example/fhir",
    }
    full_env.update({k: v.format(policy=policy, empty=tmp_path / "empty") for k, v in env.items()})
    result = subprocess.run(
        [str(EXE), "serve", "--host", "127.0.0.1", "--port", "0"],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "configuration error" in result.stderr
    assert expected.lower() in result.stderr.lower()
    assert "Traceback" not in result.stderr and "Booting worker" not in result.stderr
