"""``diazepam-cds replay`` against a real ``diazepam-cds serve`` (gunicorn), and against a
stand-in service for what a real one cannot be made to do on demand (hang, answer 500, send a
broken discovery document).

The real-server runs need the clinical engine to pass every shipped fixture; the failure tests
are built so they prove a *difference* is reported (non-zero exit, readable diff, JUnit
failure), whatever the engine currently answers.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from cds_service.cli import main
from cds_service.discovery import discovery_document
from cds_service.security.tokens import public_jwks
from tests.scenario_cards import FIXTURES_DIR, fixture_paths, load, reference_cards
from tests.support.keys import write_private_key
from tests.support.server import RunningServer, running_server

pytestmark = pytest.mark.slow

SILENT = ["order-sign-no-diazepam", "order-select-diazepam-not-selected", "tetanus-iv"]


def replay(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["replay", "--no-progress", *args])
    out, err = capsys.readouterr()
    return code, out, err


def junit(path: Path) -> ET.Element:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == 1
    return suites[0]


def write_fixture(directory: Path, fixture: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{fixture['name']}.json"
    path.write_text(json.dumps(fixture), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    tmp = tmp_path_factory.mktemp("replay-server")
    with running_server(tmp, {"CDS_AUTH": "disabled"}) as running:
        yield running


# --- against the real service -------------------------------------------------------------------


def test_replay_of_all_shipped_fixtures_passes(server: RunningServer, tmp_path: Path) -> None:
    """The go-live check, run as an integration team would: the console script, JUnit out."""
    report = tmp_path / "replay.xml"
    exe = Path(sys.executable).with_name("diazepam-cds")
    run = subprocess.run(
        [
            str(exe),
            "replay",
            "--url",
            server.base_url,
            "--report",
            str(report),
            "--no-progress",
            "--concurrency",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    names = {p.stem for p in fixture_paths()}
    assert f"{len(names)} scenarios: {len(names)} passed, 0 failed" in run.stdout
    suite = junit(report)
    cases = suite.findall("testcase")
    assert {c.get("name") for c in cases} == names | {"discovery"}
    assert suite.get("tests") == str(len(names) + 1)
    assert suite.get("failures") == "0" and suite.get("errors") == "0"
    assert not [c for c in cases if c.find("failure") is not None or c.find("error") is not None]


def test_a_modified_expectation_fails_with_a_readable_diff(
    server: RunningServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fixture = load(FIXTURES_DIR / "order-sign-no-diazepam.json")
    wrong = copy.deepcopy(fixture)
    wrong["name"] = "no-diazepam-but-expects-a-cap"
    wrong["expected"] = {
        "topics": {"duration-limit": {"indicator": "warning", "action_types": ["update"]}},
        "capped_days": 7,
    }
    directory = tmp_path / "fixtures"
    write_fixture(directory, fixture)
    write_fixture(directory, wrong)
    report = tmp_path / "replay.xml"
    code, out, _ = replay(
        str(directory), "--url", server.base_url, "--report", str(report), capsys=capsys
    )
    assert code == 1
    assert "FAIL no-diazepam-but-expects-a-cap (diazepam-order-sign):" in out
    assert "- topic duration-limit: expected present (warning), got absent" in out
    assert "- capped days: expected 7 days, got no capped order on a duration-limit card" in out
    assert "2 scenarios: 1 passed, 1 failed, 0 errors, 0 timeouts; discovery pass" in out
    suite = junit(report)
    assert suite.get("failures") == "1" and suite.get("errors") == "0"
    failed = {c.get("name"): c.find("failure") for c in suite.findall("testcase")}
    assert failed["order-sign-no-diazepam"] is None
    failure = failed["no-diazepam-but-expects-a-cap"]
    assert failure is not None and failure.get("type") == "mismatch"
    assert "capped days: expected 7 days" in (failure.text or "")


def test_fhir_version_of_the_suggested_resources_is_checked(
    server: RunningServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped fixtures are R4 drafts, so the service answers in R4: --fhir-version R4
    passes, and asking for STU3 or DSTU2 reports every suggested order that is not one."""
    path = str(FIXTURES_DIR / "elderly-78-egfr45-no-baclofen.json")
    code, out, _ = replay(path, "--url", server.base_url, "--fhir-version", "R4", capsys=capsys)
    assert code == 0, out
    code, out, _ = replay(path, "--url", server.base_url, "--fhir-version", "STU3", capsys=capsys)
    assert code == 1
    assert "suggested resource: expected FHIR STU3, got muscle-relaxant-alternative: " in out
    code, out, _ = replay(path, "--url", server.base_url, "--fhir-version", "DSTU2", capsys=capsys)
    assert code == 1
    assert "MedicationRequest is not a DSTU2 medication order (MedicationOrder)" in out


def test_a_policy_change_in_the_service_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deployment that changed the duration target from 7 to 10 days no longer answers as
    the shipped scenarios document; replay must say exactly that."""
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps({"duration": {"ideal_days": 10, "cap_to_days": 10}}), encoding="utf-8"
    )
    fixture = FIXTURES_DIR / "young-adult-back-spasm-30d.json"
    with running_server(
        tmp_path, {"CDS_AUTH": "disabled", "CDS_POLICY_FILE": str(policy)}, workers=1
    ) as changed:
        code, out, _ = replay(str(fixture), "--url", changed.base_url, capsys=capsys)
    assert code == 1
    assert "- capped days: expected 7 days, got 10 days" in out
    assert "1 scenarios: 0 passed, 1 failed" in out


def test_signed_tokens_are_minted_per_call_for_a_service_that_requires_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_path = write_private_key(tmp_path / "ehr.pem")
    (tmp_path / "ehr-jwks.json").write_text(json.dumps(public_jwks(key_path)), encoding="utf-8")
    issuers = tmp_path / "issuers.json"
    iss = "https://ehr.replay-test.example.org"
    issuers.write_text(
        json.dumps({"issuers": [{"iss": iss, "jwks_file": "ehr-jwks.json"}]}), encoding="utf-8"
    )
    paths = [str(FIXTURES_DIR / f"{name}.json") for name in SILENT]
    env = {
        "CDS_AUTH": "required",
        "CDS_TRUSTED_ISSUERS": str(issuers),
        "CDS_DEV_TRUST_SANDBOX": "false",
    }
    with running_server(tmp_path, env, workers=1) as secured:
        signed = replay(
            *paths,
            "--url",
            secured.base_url,
            "--token-key",
            str(key_path),
            "--iss",
            iss,
            capsys=capsys,
        )
        unsigned = replay(*paths, "--url", secured.base_url, capsys=capsys)
    code, out, _ = signed
    assert code == 0, out
    assert "3 scenarios: 3 passed, 0 failed, 0 errors, 0 timeouts; discovery pass" in out
    code, out, _ = unsigned
    assert code == 1
    # discovery is open by default (CDS_DISCOVERY_AUTH=open); the hooks still need a token
    assert "0 passed, 0 failed, 3 errors" in out and "discovery pass" in out
    assert "HTTP 401" in out


# --- against a stand-in service -----------------------------------------------------------------


class StandIn:
    """A CDS service that answers each fixture with its reference cards (or misbehaves)."""

    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.by_patient = {
            load(p)["request"]["context"]["patientId"]: load(p) for p in fixture_paths()
        }
        self.calls: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.delay_s = 0.0
        self.status = 200
        self.discovery = discovery_document()
        server.expect_request("/cds-services", method="GET").respond_with_handler(self._discover)
        server.expect_request(
            "/cds-services/diazepam-order-select", method="POST"
        ).respond_with_handler(self._hook)
        server.expect_request(
            "/cds-services/diazepam-order-sign", method="POST"
        ).respond_with_handler(self._hook)

    @property
    def url(self) -> str:
        return self.server.url_for("/").rstrip("/")

    def _discover(self, request: Request) -> Response:
        with self.lock:
            self.calls.append((request.url, dict(request.headers), {}))
        return Response(json.dumps(self.discovery), content_type="application/json")

    def _hook(self, request: Request) -> Response:
        body = request.get_json()
        with self.lock:
            self.calls.append((request.url, dict(request.headers), body))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.status != 200:
            outcome = {
                "resourceType": "OperationOutcome",
                "issue": [
                    {"severity": "error", "code": "exception", "diagnostics": "engine exploded"}
                ],
            }
            return Response(
                json.dumps(outcome), status=self.status, content_type="application/json"
            )
        fixture = self.by_patient[body["context"]["patientId"]]
        return Response(
            json.dumps({"cards": reference_cards(fixture)}), content_type="application/json"
        )


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    server = HTTPServer(host="127.0.0.1", threaded=True)
    server.start()
    try:
        yield StandIn(server)
    finally:
        server.clear()
        server.stop()


def test_pass_path_sends_fresh_hook_instances_and_writes_a_json_report(
    stand_in: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = tmp_path / "replay.json"
    code, out, _ = replay(
        "--url", stand_in.url, "--report", str(report), "--concurrency", "6", capsys=capsys
    )
    count = len(fixture_paths())
    assert code == 0, out
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["ok"] is True
    assert [r["verdict"] for r in data["results"]] == ["pass"] * (count + 1)
    assert all(r["latency_ms"] >= 0 for r in data["results"])
    posted = [body for _, _, body in stand_in.calls if body]
    assert len(posted) == count
    instances = {b["hookInstance"] for b in posted}
    shipped = {load(p)["request"]["hookInstance"] for p in fixture_paths()}
    assert len(instances) == count and not instances & shipped
    assert all("prefetch" in b and "fhirServer" not in b for b in posted)


def test_no_prefetch_hook_filter_and_signed_tokens(
    stand_in: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    key_path = write_private_key(tmp_path / "k.pem", key)
    code, out, _ = replay(
        "--url",
        stand_in.url,
        "--hook",
        "order-select",
        "--no-prefetch",
        "--fhir-server",
        "https://fhir.example.org/r4",
        "--token-key",
        str(key_path),
        "--iss",
        "https://ehr.example.org",
        "--kid",
        "k1",
        capsys=capsys,
    )
    assert code == 0, out
    posted = [(url, headers, body) for url, headers, body in stand_in.calls if body]
    selects = [p for p in fixture_paths() if load(p)["request"]["hook"] == "order-select"]
    assert len(posted) == len(selects) >= 2
    jtis = set()
    for url, headers, body in [*posted, *[c for c in stand_in.calls if not c[2]]]:
        token = headers["Authorization"].removeprefix("Bearer ")
        assert jwt.get_unverified_header(token)["kid"] == "k1"
        claims = jwt.decode(
            token,
            key.public_key(),
            algorithms=["ES384"],
            audience=url,
            issuer="https://ehr.example.org",
        )
        jtis.add(claims["jti"])
        if body:
            assert body["hook"] == "order-select"
            assert "prefetch" not in body
            assert body["fhirServer"] == "https://fhir.example.org/r4"
    assert len(jtis) == len(stand_in.calls)  # one token per call


def test_timeouts_and_http_errors_are_reported_and_fail(
    stand_in: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one = str(FIXTURES_DIR / "young-adult-back-spasm-30d.json")
    stand_in.delay_s = 1.0
    report = tmp_path / "timeout.xml"
    code, out, _ = replay(
        one, "--url", stand_in.url, "--timeout", "0.3", "--report", str(report), capsys=capsys
    )
    assert code == 1
    assert "TIMEOUT young-adult-back-spasm-30d" in out and "no answer within 0.3 s" in out
    error = junit(report).find("testcase[@name='young-adult-back-spasm-30d']/error")
    assert error is not None and error.get("type") == "timeout"
    stand_in.delay_s, stand_in.status = 0.0, 500
    code, out, _ = replay(one, "--url", stand_in.url, capsys=capsys)
    assert code == 1
    assert "- HTTP 500: engine exploded" in out
    assert "0 passed, 0 failed, 1 errors, 0 timeouts" in out


def test_discovery_problems_fail_the_run(
    stand_in: StandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    services = stand_in.discovery["services"]
    services[:] = [s for s in services if s["id"] != "diazepam-order-select"]
    services[0]["prefetch"].pop("observations")
    code, out, _ = replay("--url", stand_in.url, capsys=capsys)
    assert code == 1
    assert "- service diazepam-order-select: expected listed, got missing" in out
    assert "- service diazepam-order-sign prefetch 'observations'" in out
    assert "discovery FAIL" in out


def test_unusable_arguments_and_fixtures_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    broken = load(FIXTURES_DIR / "pregnancy.json")
    broken["expected"]["topics"]["pregnancy-lactation"]["indicator"] = "hard-stop"
    write_fixture(bad, broken)
    code, _, err = replay(str(bad), "--url", "http://127.0.0.1:9", capsys=capsys)
    assert code == 2 and "not a scenario fixture" in err and "hard-stop" in err
    (bad / "pregnancy.json").write_text("{not json", encoding="utf-8")
    code, _, err = replay(str(bad), "--url", "http://127.0.0.1:9", capsys=capsys)
    assert code == 2 and "cannot read fixture" in err
    code, _, err = replay("--url", "http://127.0.0.1:9", "--token-key", "k.pem", capsys=capsys)
    assert code == 2 and "--token-key needs --iss" in err
    code, _, err = replay(
        "--url",
        "http://127.0.0.1:9",
        "--token-key",
        str(tmp_path / "no.pem"),
        "--iss",
        "x",
        capsys=capsys,
    )
    assert code == 2 and "cannot sign tokens" in err
    code, _, err = replay(str(tmp_path / "missing"), "--url", "http://127.0.0.1:9", capsys=capsys)
    assert code == 2 and "no such file or directory" in err
    (bad / "pregnancy.json").unlink()
    code, _, err = replay(str(bad), "--url", "http://127.0.0.1:9", capsys=capsys)
    assert code == 2 and "no scenario fixtures found" in err


def test_connection_refused_is_an_error_not_a_crash(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = replay(
        str(FIXTURES_DIR / "pregnancy.json"),
        "--url",
        "http://127.0.0.1:9",
        "--timeout",
        "2",
        capsys=capsys,
    )
    assert code == 1
    assert "ERROR pregnancy" in out and "request failed: ConnectionError" in out
