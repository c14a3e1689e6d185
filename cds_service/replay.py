"""``diazepam-cds replay``: send fixture scenarios to a running service and check its answers.

For integration teams: before go-live and after every upgrade, point it at the test or
production endpoint to prove the service answers as documented. Each scenario's hook request
goes to ``BASE/cds-services/{service}`` (with a fresh ``hookInstance``, and a fresh JWT per
call when signing: ``aud`` is the exact URL and ``jti`` must not repeat); the answer is
compared semantically with the fixture (``cds_service.compare``). Discovery is checked too.
The exit status is 0 only if discovery and every scenario pass; mismatches, HTTP errors and
timeouts all make it 1; unusable arguments or fixtures make it 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from cds_service.cli import _EXTRA_PARSERS, command
from cds_service.compare import (
    PROFILES,
    Mismatch,
    compare,
    describe_expected,
    iter_fixture_paths,
    observe,
)
from cds_service.fhir.versions import VERSIONS, answer_problems
from cds_service.redate import redate

REPO_DIR = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = REPO_DIR / "fixtures" / "scenarios"
SCHEMA_PATH = REPO_DIR / "fixtures" / "scenario.schema.json"
HOOKS = ("order-select", "order-sign")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

PASS, FAIL, ERROR, TIMEOUT = "pass", "FAIL", "ERROR", "TIMEOUT"


@dataclass
class Result:
    """One row of the report: a scenario (or the discovery check) and its verdict."""

    name: str
    service: str
    verdict: str
    expected: str = ""
    got: str = ""
    latency_ms: float | None = None
    mismatches: list[Mismatch] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == PASS

    def details(self) -> list[str]:
        return [str(m) for m in self.mismatches] + ([self.error] if self.error else [])


@dataclass(frozen=True)
class Options:
    base_url: str
    headers_for: Callable[[str], dict[str, str]]
    timeout_s: float
    no_prefetch: bool
    fhir_server: str | None
    profile: str
    fhir_version: str | None = None


class FixtureError(ValueError):
    """A fixture file cannot be used (unreadable, not JSON, not in the documented format)."""


# --- authentication ----------------------------------------------------------------------------


def auth_headers(args: argparse.Namespace) -> Callable[[str], dict[str, str]]:
    """A function giving the Authorization header for one call to a URL."""
    if args.bearer:
        static = {"Authorization": f"Bearer {args.bearer}"}
        return lambda url: dict(static)
    if args.token_key:
        # The authentication module owns token minting (same claims as the sandbox); imported
        # lazily so replay without --token-key works even if that module cannot load.
        from cds_service.security.tokens import mint_token

        def signed(url: str) -> dict[str, str]:
            token = mint_token(args.token_key, args.iss, url, kid=args.kid)
            return {"Authorization": f"Bearer {token}"}

        signed(f"{args.url.rstrip('/')}/cds-services")  # fail fast on an unusable key
        return signed
    return lambda url: {}


# --- fixtures ------------------------------------------------------------------------------------


def _schema_validator() -> Any:
    if not SCHEMA_PATH.is_file():  # installed without the source tree: basic checks only
        return None
    from jsonschema import Draft202012Validator

    return Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def load_fixtures(paths: Sequence[str], hooks: Sequence[str] | None) -> list[dict[str, Any]]:
    """Fixtures from files/directories, validated against the format, filtered by hook."""
    validator = _schema_validator()
    fixtures = []
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise FixtureError(f"no such file or directory: {', '.join(missing)}")
    for path in iter_fixture_paths(paths or [DEFAULT_FIXTURES]):
        try:
            fixture = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FixtureError(f"{path}: cannot read fixture: {exc}") from None
        if validator is not None:
            errors = sorted(validator.iter_errors(fixture), key=lambda e: list(e.absolute_path))
            if errors:
                where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
                raise FixtureError(
                    f"{path}: not a scenario fixture: {where}: {errors[0].message[:200]}"
                )
        elif not isinstance(fixture, dict) or not {"name", "service", "request", "expected"} <= set(
            fixture
        ):
            raise FixtureError(f"{path}: not a scenario fixture (see fixtures/README.md)")
        if hooks and fixture["request"].get("hook") not in hooks:
            continue
        fixtures.append(fixture)
    return fixtures


def prepare_request(fixture: dict[str, Any], options: Options) -> dict[str, Any]:
    """The body to send: a fresh hookInstance (unique per call, as the spec requires), and
    every date moved so the order is dated today (the service counts ages and look-backs to
    the time of the call; see ``cds_service.redate``)."""
    body = redate(fixture["request"])
    body["hookInstance"] = str(uuid.uuid4())
    if options.no_prefetch:
        body.pop("prefetch", None)
    if options.fhir_server:
        body["fhirServer"] = options.fhir_server
    return body


# --- calls ---------------------------------------------------------------------------------------

_local = threading.local()


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
    return session


def _error_text(response: requests.Response) -> str:
    """The server's diagnostics (OperationOutcome) if any, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        issues = body.get("issue") or []
        texts = [
            str(i.get("diagnostics") or i.get("details", {}).get("text") or "")
            for i in issues
            if isinstance(i, dict)
        ]
        return "; ".join(t for t in texts if t)[:300]
    return json.dumps(body)[:200]


def run_scenario(fixture: dict[str, Any], options: Options) -> Result:
    service = fixture["service"]
    url = f"{options.base_url}/cds-services/{service}"
    result = Result(
        fixture["name"], service, ERROR, expected=describe_expected(fixture["expected"])
    )
    try:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **options.headers_for(url),
        }
        body = json.dumps(prepare_request(fixture, options))
        started = time.perf_counter()
        response = _session().post(url, data=body, headers=headers, timeout=options.timeout_s)
        result.latency_ms = (time.perf_counter() - started) * 1000
    except requests.Timeout:
        result.verdict, result.error = TIMEOUT, f"no answer within {options.timeout_s:g} s"
        return result
    except requests.RequestException as exc:
        result.error = f"request failed: {type(exc).__name__}: {str(exc)[:200]}"
        return result
    except Exception as exc:  # e.g. token minting failed: report, keep going
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    if response.status_code != 200:
        result.got = f"HTTP {response.status_code}"
        result.error = f"HTTP {response.status_code}: {_error_text(response)}"
        return result
    try:
        answer = response.json()
    except ValueError:
        result.got, result.error = "not JSON", "response body is not JSON"
        return result
    result.mismatches = compare(
        fixture["expected"], answer, profile=options.profile, request=fixture.get("request")
    )
    cards = answer.get("cards") if isinstance(answer, dict) else None
    if options.fhir_version and isinstance(cards, list):
        result.mismatches += [
            Mismatch("suggested resource", f"FHIR {options.fhir_version}", problem)
            for problem in answer_problems(cards, options.fhir_version)
        ]
    result.got = observe(cards if isinstance(cards, list) else []).short()
    result.verdict = FAIL if result.mismatches else PASS
    return result


def check_discovery(fixtures: list[dict[str, Any]], options: Options) -> Result:
    """Discovery lists every service the fixtures call, on the right hook, with the prefetch
    templates for every key the fixtures prefetch."""
    url = f"{options.base_url}/cds-services"
    result = Result("discovery", "cds-services", ERROR, expected="services, hooks, prefetch")
    try:
        started = time.perf_counter()
        response = _session().get(
            url,
            headers={"Accept": "application/json", **options.headers_for(url)},
            timeout=options.timeout_s,
        )
        result.latency_ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            result.error = f"HTTP {response.status_code}: {_error_text(response)}"
            return result
        services = response.json().get("services")
        if not isinstance(services, list):
            raise ValueError("no 'services' list")
    except requests.Timeout:
        result.verdict, result.error = TIMEOUT, f"no answer within {options.timeout_s:g} s"
        return result
    except (requests.RequestException, ValueError, AttributeError) as exc:
        result.error = f"discovery unusable: {type(exc).__name__}: {str(exc)[:200]}"
        return result
    by_id = {s.get("id"): s for s in services if isinstance(s, dict)}
    problems: list[Mismatch] = []
    needed: dict[str, tuple[str, set[str]]] = {}
    for fixture in fixtures:
        hook, keys = needed.get(fixture["service"], (fixture["request"]["hook"], set()))
        needed[fixture["service"]] = (hook, keys | set(fixture["request"].get("prefetch") or {}))
    for service_id, (hook, keys) in sorted(needed.items()):
        entry = by_id.get(service_id)
        if entry is None:
            problems.append(Mismatch(f"service {service_id}", "listed", "missing"))
            continue
        if entry.get("hook") != hook:
            problems.append(Mismatch(f"service {service_id} hook", hook, str(entry.get("hook"))))
        for key in ("title", "description"):
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                problems.append(Mismatch(f"service {service_id} {key}", "present", "missing"))
        templates = entry.get("prefetch") if isinstance(entry.get("prefetch"), dict) else {}
        for key in sorted(keys):
            template = templates.get(key)
            if not isinstance(template, str) or "{{context.patientId}}" not in template:
                problems.append(
                    Mismatch(
                        f"service {service_id} prefetch '{key}'",
                        "a template on context.patientId",
                        repr(template),
                    )
                )
    result.mismatches = problems
    result.got = f"{len(services)} services" + (" (problems)" if problems else "")
    result.verdict = FAIL if problems else PASS
    return result


def run_all(
    fixtures: list[dict[str, Any]], options: Options, *, concurrency: int, progress: bool
) -> list[Result]:
    from tqdm import tqdm

    results: list[Result] = [check_discovery(fixtures, options)]
    with (
        ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool,
        tqdm(
            total=len(fixtures),
            desc="replay",
            unit="scenario",
            file=sys.stderr,
            disable=None if progress else True,
            leave=False,
        ) as bar,
    ):
        futures = [pool.submit(run_scenario, f, options) for f in fixtures]
        for future in futures:
            results.append(future.result())
            bar.update(1)
    return results


# --- output --------------------------------------------------------------------------------------


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def print_table(results: list[Result], out: TextIO) -> None:
    name_w = max(8, *(len(r.name) for r in results))
    text_w = 44
    header = (
        f"{'scenario':<{name_w}}  {'expected':<{text_w}}  {'got':<{text_w}}  "
        f"{'verdict':<7}  {'ms':>7}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for r in results:
        latency = f"{r.latency_ms:7.1f}" if r.latency_ms is not None else f"{'-':>7}"
        expected, got = _clip(r.expected, text_w), _clip(r.got, text_w)
        print(
            f"{r.name:<{name_w}}  {expected:<{text_w}}  {got:<{text_w}}  {r.verdict:<7}  {latency}",
            file=out,
        )
    failing = [r for r in results if not r.ok]
    if failing:
        print("", file=out)
        for r in failing:
            print(f"{r.verdict} {r.name} ({r.service}):", file=out)
            for line in r.details():
                print(f"    - {line}", file=out)
    print("", file=out)
    print(summary_line(results), file=out)


def summary_line(results: list[Result]) -> str:
    scenarios = [r for r in results if r.name != "discovery" or r.service != "cds-services"]
    counts = {v: sum(r.verdict == v for r in scenarios) for v in (PASS, FAIL, ERROR, TIMEOUT)}
    latencies = sorted(r.latency_ms for r in scenarios if r.latency_ms is not None)
    timing = ""
    if latencies:
        timing = (
            f"; latency median {statistics.median(latencies):.1f} ms, max {latencies[-1]:.1f} ms"
        )
    discovery = next((r for r in results if r.service == "cds-services"), None)
    disc = f"discovery {discovery.verdict}" if discovery else "discovery not checked"
    return (
        f"{len(scenarios)} scenarios: {counts[PASS]} passed, {counts[FAIL]} failed, "
        f"{counts[ERROR]} errors, {counts[TIMEOUT]} timeouts; {disc}{timing}"
    )


def write_junit(results: list[Result], path: Path, base_url: str) -> None:
    total_s = sum((r.latency_ms or 0) for r in results) / 1000
    failures = sum(r.verdict == FAIL for r in results)
    errors = sum(r.verdict in (ERROR, TIMEOUT) for r in results)
    suites = ET.Element(
        "testsuites",
        name="diazepam-cds replay",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        time=f"{total_s:.3f}",
    )
    suite = ET.SubElement(
        suites,
        "testsuite",
        name=f"replay {base_url}",
        tests=str(len(results)),
        failures=str(failures),
        errors=str(errors),
        skipped="0",
        time=f"{total_s:.3f}",
    )
    for r in results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"replay.{r.service}",
            name=r.name,
            time=f"{(r.latency_ms or 0) / 1000:.3f}",
        )
        text = "\n".join(r.details())
        if r.verdict == FAIL:
            ET.SubElement(
                case, "failure", message=_clip(text.split("\n")[0], 300), type="mismatch"
            ).text = text
        elif r.verdict in (ERROR, TIMEOUT):
            ET.SubElement(
                case, "error", message=_clip(r.error, 300), type=r.verdict.lower()
            ).text = text
        ET.SubElement(case, "system-out").text = f"expected: {r.expected}\ngot: {r.got}"
    ET.indent(suites)
    path.write_bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))


def write_json(results: list[Result], path: Path, base_url: str) -> None:
    report = {
        "url": base_url,
        "summary": summary_line(results),
        "ok": all(r.ok for r in results),
        "results": [
            {
                "name": r.name,
                "service": r.service,
                "verdict": r.verdict.lower(),
                "latency_ms": None if r.latency_ms is None else round(r.latency_ms, 2),
                "expected": r.expected,
                "got": r.got,
                "mismatches": [
                    {"what": m.what, "expected": m.expected, "got": m.got} for m in r.mismatches
                ],
                **({"error": r.error} if r.error else {}),
            }
            for r in results
        ],
    }
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


# --- command line --------------------------------------------------------------------------------


def _add_replay(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="send fixture scenarios to a running service and compare its answers",
        description="Replays clinical scenario fixtures (default: the shipped fixtures/scenarios) "
        "against BASE/cds-services/{id} and compares each answer semantically with the "
        "fixture's expected outcome. Exit 0: all passed; 1: a mismatch, error or timeout; "
        "2: bad arguments or fixtures. Example: diazepam-cds replay --url "
        "https://cds-test.example.org --token-key ehr.pem --iss https://ehr.example.org "
        "--report replay.xml",
    )
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATHS",
        help="fixture files or directories (searched recursively)",
    )
    p.add_argument("--url", required=True, help="service base URL (without /cds-services)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token-key", help="PEM private key: sign a fresh JWT for every call")
    auth.add_argument("--bearer", help="send this fixed bearer token instead (gateways)")
    p.add_argument("--iss", help="issuer for --token-key, as trusted by the service")
    p.add_argument("--kid", help="key id for --token-key (default: the key's thumbprint)")
    p.add_argument(
        "--hook", action="append", choices=HOOKS, help="only scenarios of this hook (repeatable)"
    )
    p.add_argument("--report", help="write a report: *.xml (JUnit) or *.json")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests (default 4)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per call (default 10)")
    p.add_argument(
        "--no-prefetch",
        action="store_true",
        help="strip prefetch so the service must fetch from its FHIR server",
    )
    p.add_argument("--fhir-server", help="set fhirServer in every request (with --no-prefetch)")
    p.add_argument(
        "--profile",
        choices=PROFILES,
        default="standard",
        help="EHR profile the service runs for this client (default standard)",
    )
    p.add_argument(
        "--fhir-version",
        choices=VERSIONS,
        help="also check that every suggested order is a valid resource of this FHIR version "
        "(the service answers in the version of the drafts; fhir.resources models, DSTU2 by "
        "shape)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


_EXTRA_PARSERS.append(_add_replay)


def _usage(message: str) -> int:
    print(f"diazepam-cds replay: {message}", file=sys.stderr)
    return EXIT_USAGE


@command("replay")
def replay(args: argparse.Namespace) -> int:
    if args.token_key and not args.iss:
        return _usage("--token-key needs --iss")
    if args.concurrency < 1 or args.timeout <= 0:
        return _usage("--concurrency and --timeout must be positive")
    if not args.url.startswith(("http://", "https://")):
        return _usage(f"--url must be an http(s) URL, got {args.url!r}")
    report = Path(args.report) if args.report else None
    if report is not None and report.suffix.lower() not in (".xml", ".json"):
        return _usage("--report must end in .xml (JUnit) or .json")
    try:
        fixtures = load_fixtures(args.paths, args.hook)
    except FixtureError as exc:
        return _usage(str(exc))
    if not fixtures:
        return _usage("no scenario fixtures found")
    try:
        headers_for = auth_headers(args)
    except Exception as exc:  # unusable key: say so before sending anything
        return _usage(f"cannot sign tokens: {exc}")
    base_url = args.url.rstrip("/")
    options = Options(
        base_url,
        headers_for,
        args.timeout,
        args.no_prefetch,
        args.fhir_server,
        args.profile,
        args.fhir_version,
    )
    results = run_all(
        fixtures, options, concurrency=args.concurrency, progress=not args.no_progress
    )
    print_table(results, sys.stdout)
    if report is not None:
        (write_junit if report.suffix.lower() == ".xml" else write_json)(results, report, base_url)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
