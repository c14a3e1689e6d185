"""``make bench``: the service against the floors of its own stack, in one run on this machine.

1. Build the request bodies from the fixtures (bench/payloads.py) and a benchmark EHR identity
   (ES384 key, trusted-issuers file; bench/tokens.py).
2. Start the two floor apps (bench/floor_app.py: bare, and protocol = bare + the JWT checks
   CDS Hooks requires) and the real service (``diazepam-cds serve``, SQLite store on) twice:
   authentication on, and ``CDS_AUTH=disabled``; all under identical gunicorn options.
3. For each body and concurrency: warm up and drive the bare floor, the protocol floor, the
   service with auth on, then with auth off, with wrk, recording the CPU time of each app's
   workers. Authenticated apps get fresh pools of single-use tokens sized from the bare floor's
   throughput. Auth on is compared with the protocol floor, auth off with the bare floor.
4. Peak RSS per worker; cold path against the real FHIR test server when it is installed; a
   pyinstrument profile of the large request; in-process latency figures (the engine alone,
   answers against a hung or broken FHIR server: bench/latency.py).
5. Write ``bench/results/latest.json`` (plus a dated copy for tracking), ``results.md`` (the
   table) and print the table.

Numbers are only comparable within one run: the floors are re-measured every time.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from bench import payloads
from bench.cold import timing_summary
from bench.loadgen import run_load, wrk_available
from bench.procs import start_floor, workers_cpu_seconds, workers_peak_rss_mib
from bench.report import evaluate_targets, render_markdown
from bench.tokens import ISSUER, create_issuer, mint, mint_pool
from cds_service.config import load_settings
from cds_service.server import gunicorn_options
from tests.support.server import RunningServer, start_server

REPO = payloads.REPO
RESULTS = REPO / "bench" / "results"
SIGN = "diazepam-order-sign"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "n/a"


def git_sha() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return done.stdout.strip() + ("+dirty" if dirty else "")


def filesystem_of(path: Path) -> str:
    """The mount's filesystem type (tmpfs makes fsync free, which changes SQLite's cost)."""
    best, fstype = "", "unknown"
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return fstype
    resolved = str(path.resolve())
    for line in mounts:
        parts = line.split()
        if len(parts) >= 3 and resolved.startswith(parts[1]) and len(parts[1]) > len(best):
            best, fstype = parts[1], parts[2]
    return fstype


def service_env(issuer_path: Path) -> dict[str, str]:
    return {
        "CDS_ENV": "production",
        "CDS_AUTH": "required",
        "CDS_TRUSTED_ISSUERS": str(issuer_path),
        "CDS_LOG_LEVEL": "INFO",
        # the cold path's FHIR server is plain http on loopback
        "CDS_FHIR_ALLOW_LOOPBACK": "true",
        "CDS_FHIR_ALLOWLIST": "127.0.0.1",
    }


def sanity_call(
    server: RunningServer, body: dict[str, Any], key_path: Path | None
) -> dict[str, Any]:
    """One call before measuring: a run of 401s or 400s would time error pages, not advice.
    ``key_path`` None: the service runs without authentication, and no token is sent."""
    url = f"{server.base_url}/cds-services/{SIGN}"
    headers = {"Authorization": f"Bearer {mint(key_path, url)}"} if key_path else {}
    response = requests.post(url, json=body, headers=headers, timeout=30)
    if response.status_code != 200:
        raise RuntimeError(
            f"service answered {response.status_code} to the benchmark body: {response.text[:500]}"
        )
    cards = response.json().get("cards", [])
    topics = sorted({((c.get("source") or {}).get("topic") or {}).get("code", "?") for c in cards})
    return {"status": response.status_code, "cards": len(cards), "topics": topics}


@dataclass
class Apps:
    """The four servers of one run, measured one after the other at every point: the floors
    first, then the service with authentication on and off (same gunicorn options)."""

    floor: RunningServer
    protocol_floor: RunningServer
    service: RunningServer
    service_noauth: RunningServer | None


def measure_point(
    *,
    apps: Apps,
    body_file: Path,
    key_path: Path,
    connections: int,
    duration_s: float,
    warmup_s: float,
    work: Path,
    ignored_tokens: Path,
) -> dict[str, Any]:
    """One body at one concurrency: each app warmed up then measured, with the CPU its
    workers used over the measured run. Every authenticated app gets fresh pools of
    single-use tokens for its own URL, sized from the bare floor's throughput (nothing
    authenticated can beat it); the apps that check no token (the bare floor, the service
    with authentication off) get the same requests, headers included, from a reused pool."""
    path = f"/cds-services/{SIGN}"
    ceiling: list[float] = []

    def pool(url: str, seconds: float, name: str) -> Path:
        rate = ceiling[0] if ceiling else 5000.0
        count = math.ceil(rate * seconds * 1.3) + 500
        return mint_pool(key_path, url, count, work / name)

    def one(name: str, server: RunningServer, auth: bool, log_stages: bool) -> dict[str, Any]:
        url = server.base_url + path
        warm = pool(url, warmup_s, f"{name}-warm.tokens") if auth else ignored_tokens
        run = pool(url, duration_s, f"{name}-run.tokens") if auth else ignored_tokens
        run_load(url, body_file, warm, connections, warmup_s)
        log_offset = len(server.log_text()) if log_stages else 0
        cpu_before = workers_cpu_seconds(server.process.pid)
        result = run_load(url, body_file, run, connections, duration_s)
        cpu = workers_cpu_seconds(server.process.pid) - cpu_before
        # CPU per answered call: unlike req/s it hardly moves with what else the machine is
        # doing, and at saturation the throughput ratio is about the inverse CPU ratio
        out = {"load": result, "cpu_ms": per_request_ms(cpu, result.requests)}
        if log_stages:
            out["stages"] = timing_summary(server.log_text()[log_offset:], SIGN)
        return out

    floor = one("floor", apps.floor, False, False)
    ceiling.append(floor["load"].rps)
    protocol = one("protocol-floor", apps.protocol_floor, True, False)
    service = one("service", apps.service, True, True)
    point: dict[str, Any] = {
        "floor": floor["load"].to_json(),
        "protocol_floor": protocol["load"].to_json(),
        "service": service["load"].to_json(),
        "service_stages": service["stages"],
        "cpu_ms_per_request": {
            "floor": floor["cpu_ms"],
            "protocol_floor": protocol["cpu_ms"],
            "service": service["cpu_ms"],
        },
    }
    if apps.service_noauth is not None:
        noauth = one("service-noauth", apps.service_noauth, False, True)
        point["service_noauth"] = noauth["load"].to_json()
        point["service_noauth_stages"] = noauth["stages"]
        point["cpu_ms_per_request"]["service_noauth"] = noauth["cpu_ms"]
    return point


def per_request_ms(cpu_s: float, requests: int) -> float | None:
    return round(cpu_s * 1000 / requests, 3) if requests else None


def start_cold_fhir(work: Path) -> tuple[Any, str | None]:
    """The cold path's FHIR server, started before the service: the benchmark issuer must
    name it in ``fhir_servers`` (per-issuer pinning, issue 17; without it every call without
    prefetch is a 412). (server, None), or (None, why it is skipped). It idles until the cold
    path, after the warm points."""
    try:
        from tests.support import fhir_server
    except ImportError:
        return None, "tests/support/fhir_server.py is not there yet"
    if not fhir_server.available():
        return None, f"FHIR test server not installed: {fhir_server.INSTALL_HINT}"
    try:
        server = fhir_server.start_fhir_server(work / "fhir")
    except RuntimeError as exc:
        return None, f"FHIR test server did not start: {str(exc)[:300]}"
    atexit.register(server.stop)  # its own session: never left behind, whatever fails later
    return server, None


def run_cold(
    service: RunningServer,
    bodies: dict[str, dict[str, Any]],
    key_path: Path,
    work: Path,
    duration_s: float,
    fhir: Any,
) -> dict[str, Any]:
    """The bodies without prefetch against ``fhir`` (started by ``start_cold_fhir`` and
    named in the benchmark issuer's ``fhir_servers``); stops it."""
    from bench.cold import DirectFetcher, added_latency, timing_summary

    out: dict[str, Any] = {
        "fhir_server": f"sekmet-fhir (tests/support/fhir_server.py) at {fhir.base_url}"
    }
    try:
        url = f"{service.base_url}/cds-services/{SIGN}"
        for name, body in bodies.items():
            fhir.transaction(payloads.record_resources(body))
            cold = payloads.without_prefetch(body, fhir.base_url, fhir.token)
            check = sanity_call(service, cold, key_path)
            cold_file = work / f"cold-{name}.json"
            cold_file.write_text(json.dumps(cold), encoding="utf-8")
            warm_pool = mint_pool(key_path, url, 300, work / "cold-warm.tokens")
            run_load(url, cold_file, warm_pool, 1, 2)
            run_pool = mint_pool(key_path, url, 6000, work / "cold-run.tokens")
            log_offset = len(service.log_text())
            svc = run_load(url, cold_file, run_pool, 1, duration_s).to_json()
            stages = timing_summary(service.log_text()[log_offset:], SIGN)
            fetcher = DirectFetcher(fhir.base_url, fhir.token, body["context"]["patientId"])
            try:
                direct = fetcher.measure(iterations=max(50, min(400, svc["requests"])))
            finally:
                fetcher.close()
            out[name] = {
                "sanity": check,
                "service_fetched": stages.get("fetch_ms", {}).get("n", 0),
                "service_stages": stages,
                "service": svc,
                "fhir_direct": direct,
                "added": added_latency(svc, direct),
            }
            log(
                f"cold {name}: service p50 {svc['p50_ms']} ms, FHIR alone p50 {direct['p50_ms']} ms"
            )
    finally:
        fhir.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per point")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (both apps)")
    parser.add_argument("--bodies", default="large,small")
    parser.add_argument("--no-cold", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument(
        "--no-auth-off", action="store_true", help="skip the service with CDS_AUTH=disabled"
    )
    parser.add_argument("--no-latency", action="store_true", help="skip bench/latency.py")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="service CDS_DATA_DIR (SQLite); default a temp dir on disk. /dev/shm shows what "
        "the code costs without the disk's fsync",
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="service CDS_DATABASE_URL instead of SQLite (use a database of its own: the "
        "service migrates it at start-up)",
    )
    parser.add_argument(
        "--variant", default="", help="suffix for the result files (latest-VARIANT.json)"
    )
    args = parser.parse_args(argv)

    concurrencies = [int(c) for c in args.concurrency.split(",") if c.strip()]
    names = [n.strip() for n in args.bodies.split(",") if n.strip()]
    load_before = uptime()
    built = payloads.build_all()
    bodies = {name: built[name] for name in names}
    work = Path(tempfile.mkdtemp(prefix="diazepam-bench-"))
    fhir, cold_skipped = (None, "--no-cold") if args.no_cold else start_cold_fhir(work)
    issuer = create_issuer(work / "auth", fhir_servers=[fhir.base_url] if fhir else ())
    body_files = {}
    for name, body in bodies.items():
        body_files[name] = work / f"{name}.json"
        body_files[name].write_text(json.dumps(body), encoding="utf-8")
    if not wrk_available():
        log(
            "wrk not found: using the Python load generator (slower client, figures not "
            "comparable with wrk runs; `apt-get install wrk`)"
        )

    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_sha(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "uptime_before": load_before,
        },
        "load_generator": "wrk" if wrk_available() else "python",
        "settings": {
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "workers": args.workers,
            # the gunicorn options both floors and the service run with
            "worker_class": gunicorn_options(load_settings())["worker_class"],
            "threads": load_settings().threads,
            "concurrency": concurrencies,
        },
        "bodies": {
            name: {
                "bytes": body_files[name].stat().st_size,
                "resources": {
                    key: len(payloads._prefetched(body, key)) for key in payloads.PREFETCH_KEYS
                },
            }
            for name, body in bodies.items()
        },
        "large_base_fixture": built["large_base"],
        "warm": {},
    }
    floor = start_floor(work, workers=args.workers)
    protocol_floor = start_floor(
        work, workers=args.workers, kind="protocol", jwks=issuer.jwks_path, iss=ISSUER
    )
    env = service_env(issuer.trusted_issuers_path)
    data_dir = Path(tempfile.mkdtemp(prefix="diazepam-bench-data-", dir=args.data_dir))
    env["CDS_DATA_DIR"] = str(data_dir / "auth-on")
    results["settings"]["data_dir_fs"] = filesystem_of(data_dir)
    if args.database_url:
        env["CDS_DATABASE_URL"] = args.database_url
        results["settings"]["database"] = args.database_url.split(":", 1)[0]
    else:
        results["settings"]["database"] = "sqlite"
    results["settings"]["variant"] = args.variant or "default"
    service = start_server(work, env, workers=args.workers)
    # the same service with CDS_AUTH=disabled, its own SQLite store (a PostgreSQL URL is
    # shared: the two are never measured at the same time)
    service_noauth = None
    if not args.no_auth_off:
        noauth_env = {**env, "CDS_AUTH": "disabled", "CDS_DATA_DIR": str(data_dir / "auth-off")}
        service_noauth = start_server(work, noauth_env, workers=args.workers)
    apps = Apps(floor, protocol_floor, service, service_noauth)
    try:
        ignored_tokens = mint_pool(
            issuer.key_path, f"{floor.base_url}/cds-services/{SIGN}", 2000, work / "any.tokens"
        )
        for name, body in bodies.items():
            results["bodies"][name]["sanity"] = sanity_call(service, body, issuer.key_path)
            if service_noauth is not None:
                sanity_call(service_noauth, body, None)
            results["warm"][name] = {}
            for c in concurrencies:
                log(f"warm {name} c={c}")
                point = measure_point(
                    apps=apps,
                    body_file=body_files[name],
                    key_path=issuer.key_path,
                    connections=c,
                    duration_s=args.duration,
                    warmup_s=args.warmup,
                    work=work,
                    ignored_tokens=ignored_tokens,
                )
                results["warm"][name][str(c)] = point
                log(
                    "  "
                    + " | ".join(
                        f"{label} {point[key]['rps']:.0f} rps p99 {point[key]['p99_ms']:.2f} ms"
                        f" cpu {point['cpu_ms_per_request'].get(key)} ms"
                        for label, key in (
                            ("floor", "floor"),
                            ("protocol", "protocol_floor"),
                            ("service", "service"),
                            ("no-auth", "service_noauth"),
                        )
                        if key in point
                    )
                )
        results["peak_rss_mib"] = {
            "floor": workers_peak_rss_mib(floor.process.pid),
            "protocol_floor": workers_peak_rss_mib(protocol_floor.process.pid),
            "service": workers_peak_rss_mib(service.process.pid),
        }
        if fhir is not None:
            log("cold path")
            try:
                results["cold"] = run_cold(
                    service, bodies, issuer.key_path, work, args.duration, fhir
                )
            except Exception as exc:  # the warm figures are still worth writing
                log(f"cold path failed: {exc}")
                results["cold"] = {"skipped": f"failed: {str(exc)[:500]}"}
        elif not args.no_cold:
            results["cold"] = {"skipped": cold_skipped}
    finally:
        for server in (floor, protocol_floor, service, service_noauth):
            if server is not None:
                server.kill()
        if fhir is not None:
            fhir.stop()
    if not args.no_profile:
        # one in-process profile per body (profile-large.txt, profile-small.txt)
        from bench.profile import profile_requests

        results["profile"] = {}
        for name, body in bodies.items():
            log(f"profile {name}")
            results["profile"][name] = profile_requests(
                issuer, body, args.out, work / f"profile-data-{name}", name=name
            )
    if not args.no_latency:
        log("latency: engine alone, deadline against a hung FHIR server")
        from bench.latency import measure

        results["latency"] = measure()
    results["machine"]["uptime_after"] = uptime()
    results["targets"] = evaluate_targets(results)
    args.out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(results, indent=2)
    suffix = f"-{args.variant}" if args.variant else ""
    (args.out / f"latest{suffix}.json").write_text(text + "\n", encoding="utf-8")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (args.out / "history").mkdir(exist_ok=True)
    (args.out / "history" / f"{stamp}{suffix}.json").write_text(text + "\n", encoding="utf-8")
    table = render_markdown(results)
    (args.out / f"results{suffix}.md").write_text(table, encoding="utf-8")
    print(table)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
