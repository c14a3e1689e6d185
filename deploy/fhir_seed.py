"""Seed a FHIR R4 server with the patients of the fixture scenarios (compose's one-shot loader).

Each fixture is a scenario holding a complete CDS Hooks request whose ``prefetch`` carries the
patient's chart. The EHR's FHIR server in the compose stack must hold the same chart, so the
no-prefetch path (the service fetching from ``fhirServer``) sees what the prefetch path sees.
This script collects those resources and PUTs them as one transaction Bundle: PUT with the
fixture's own ids makes a re-run idempotent and keeps ``context.patientId`` valid.

Standard library only, so it runs in a plain ``python:3.11-slim`` container with no install.
It waits for the server (the HAPI image has no shell for a compose health check), then loads.

    python deploy/fhir_seed.py --base http://hapi:8080/fhir --wait 300 fixtures/
    python deploy/fhir_seed.py --dry-run fixtures/     # print the Bundle, send nothing

A server that wants a bearer token gets the one in ``FHIR_SEED_TOKEN`` (never on the command
line, where ``ps`` would show it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FHIR_JSON = "application/fhir+json"
# Prefetch answers that are not chart data: errors and empty search envelopes.
_NOT_CHART = {"OperationOutcome", "Bundle"}
# Referenced-before-referencing order; a server enforcing referential integrity then accepts
# the Bundle whatever order the fixtures listed things in.
_FIRST = ("Organization", "Practitioner", "PractitionerRole", "Patient", "Medication")


class SeedError(RuntimeError):
    """The fixtures cannot be loaded as they are, or the server refused them."""


@dataclass
class Collected:
    """Resources keyed by ``Type/id``, plus what was left out and why."""

    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def fixture_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # Recursive: fixtures/ keeps scenarios in scenarios/ and hospitals add local/.
            files.extend(sorted(p for p in path.rglob("*.json") if p.is_file()))
        elif path.is_file():
            files.append(path)
    return files


def hook_request_of(fixture: Any) -> dict[str, Any] | None:
    """The CDS Hooks request inside a scenario file (``request``), or a bare request."""
    if not isinstance(fixture, dict):
        return None
    request = fixture.get("request", fixture)
    if isinstance(request, dict) and isinstance(request.get("prefetch"), dict):
        return request
    return None


def chart_resources(value: Any) -> Iterator[dict[str, Any]]:
    """Resources of one prefetch value: a resource, or a Bundle's entries (nested too)."""
    if not isinstance(value, dict):
        return  # null prefetch: the EHR had nothing; nothing to seed
    kind = value.get("resourceType")
    if kind == "Bundle":
        for entry in value.get("entry") or []:
            if isinstance(entry, dict):
                yield from chart_resources(entry.get("resource"))
    elif isinstance(kind, str) and kind not in _NOT_CHART:
        yield value


def collect(files: Iterable[Path]) -> Collected:
    out = Collected()
    for path in files:
        try:
            fixture = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SeedError(f"{path}: not readable JSON ({exc})") from exc
        request = hook_request_of(fixture)
        if request is None:
            if isinstance(fixture, dict) and ("request" in fixture or "hook" in fixture):
                out.skipped.append(f"{path.name}: no request with prefetch")
            continue  # other JSON beside the scenarios (e.g. the format's schema)
        for key, value in request["prefetch"].items():
            for resource in chart_resources(value):
                rid = resource.get("id")
                if not isinstance(rid, str) or not rid:
                    out.skipped.append(f"{path.name}: {key}: {resource['resourceType']} has no id")
                    continue
                ref = f"{resource['resourceType']}/{rid}"
                known = out.resources.get(ref)
                if known is None:
                    out.resources[ref] = resource
                    out.sources[ref] = path.name
                elif known != resource:
                    # One server holds one version: the first fixture wins, and the loader says
                    # so, because the other scenario would then read a different chart.
                    out.conflicts.append(f"{ref}: {out.sources[ref]} differs from {path.name}")
    return out


def _order(ref: str) -> tuple[int, str]:
    kind = ref.split("/", 1)[0]
    return (_FIRST.index(kind) if kind in _FIRST else len(_FIRST), ref)


def transaction_bundle(
    resources: dict[str, dict[str, Any]], base_url: str | None = None
) -> dict[str, Any]:
    entries = []
    for ref in sorted(resources, key=_order):
        entry: dict[str, Any] = {
            "resource": resources[ref],
            "request": {"method": "PUT", "url": ref},
        }
        if base_url:
            entry = {"fullUrl": f"{base_url.rstrip('/')}/{ref}", **entry}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _http(method: str, url: str, body: bytes | None, timeout: float) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    request.add_header("Accept", FHIR_JSON)
    token = os.environ.get("FHIR_SEED_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("Content-Type", FHIR_JSON)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_for_server(base_url: str, wait_s: float, interval_s: float = 3.0) -> None:
    """Poll ``/metadata`` until the server answers 200: HAPI takes a minute to start."""
    deadline = time.monotonic() + wait_s
    last = "no answer"
    while True:
        try:
            status, _ = _http("GET", f"{base_url.rstrip('/')}/metadata", None, timeout=10)
            if status == 200:
                return
            last = f"HTTP {status}"
        except (OSError, urllib.error.URLError) as exc:
            last = type(exc).__name__
        if time.monotonic() + interval_s > deadline:
            raise SeedError(f"FHIR server {base_url} not ready after {wait_s:.0f} s ({last})")
        time.sleep(interval_s)


def post_transaction(base_url: str, bundle: dict[str, Any], timeout: float = 120) -> list[str]:
    """Send the Bundle; return the entry statuses. Any entry not 2xx fails the load."""
    body = json.dumps(bundle).encode("utf-8")
    status, raw = _http("POST", base_url.rstrip("/"), body, timeout)
    if status >= 300:
        raise SeedError(f"transaction refused: HTTP {status}: {raw[:500].decode(errors='replace')}")
    try:
        answer = json.loads(raw)
        statuses = [str(e["response"]["status"]) for e in answer.get("entry", [])]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SeedError(f"transaction answer is not a transaction-response Bundle: {exc}") from exc
    bad = [s for s in statuses if not s.startswith("2")]
    if bad or len(statuses) != len(bundle["entry"]):
        raise SeedError(f"transaction incomplete: {len(statuses)} answers, failures {bad[:5]}")
    return statuses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="fixture files or directories")
    parser.add_argument("--base", default="http://localhost:8080/fhir", help="FHIR base URL")
    parser.add_argument("--wait", type=float, default=0, help="seconds to wait for the server")
    parser.add_argument("--poll", type=float, default=3.0, help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help="print the Bundle, send nothing")
    parser.add_argument(
        "--allow-conflicts", action="store_true", help="load even if fixtures disagree"
    )
    args = parser.parse_args(argv)
    try:
        files = fixture_files(args.paths)
        if not files:
            raise SeedError(f"no fixture files under {', '.join(map(str, args.paths))}")
        collected = collect(files)
        for note in collected.skipped:
            print(f"fhir-seed: skipped {note}", file=sys.stderr)
        for note in collected.conflicts:
            print(f"fhir-seed: conflict {note}", file=sys.stderr)
        if collected.conflicts and not args.allow_conflicts:
            raise SeedError(f"{len(collected.conflicts)} conflicting resources (see above)")
        bundle = transaction_bundle(collected.resources, args.base)
        if args.dry_run:
            json.dump(bundle, sys.stdout, indent=1)
            print()
            return 0
        if args.wait:
            wait_for_server(args.base, args.wait, args.poll)
        statuses = post_transaction(args.base, bundle)
    except SeedError as exc:
        print(f"fhir-seed: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps({"loaded": len(statuses), "fixtures": len(files), "base": args.base.rstrip("/")})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
