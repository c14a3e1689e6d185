"""Ratios, target verdicts and the table are computed from the results document alone."""

from __future__ import annotations

from bench.cold import timing_summary
from bench.loadgen import parse_wrk_output, percentile, wrk_threads
from bench.report import evaluate_targets, ratio, render_markdown


def _point(rps: float, p50: float, p95: float, p99: float, non_2xx: int = 0) -> dict:
    return {
        "rps": rps,
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "non_2xx": non_2xx,
        "socket_errors": 0,
    }


def _results(service_rps: float, p99_c1: float, non_2xx: int = 0) -> dict:
    return {
        "warm": {
            "large": {
                "1": {"floor": _point(1000, 1, 2, 4), "service": _point(300, 3, 5, p99_c1)},
                "8": {
                    "floor": _point(2000, 4, 8, 10),
                    "service": _point(service_rps, 8, 16, 30, non_2xx),
                },
            }
        },
        "cold": {
            "large": {
                "service": {**_point(50, 20, 25, 30), "requests": 500},
                "service_fetched": 500,
                "fhir_direct": _point(0, 12, 14, 16),
                "added": {"p50_ms": 8.0, "p95_ms": 11.0, "p99_ms": 14.0},
            }
        },
        "peak_rss_mib": {"floor": [30.0, 31.0], "service": [80.0, 93.0]},
    }


def test_ratio_is_service_over_floor_and_none_without_a_floor():
    assert ratio(500, 2000) == 0.25
    assert ratio(6.0, 2.0) == 3.0
    assert ratio(1.0, 0) is None


def test_targets_follow_the_issue_thresholds():
    met = evaluate_targets(_results(service_rps=1000, p99_c1=19.9))
    assert met["large_c8_throughput_ratio"] == {"value": 0.5, "target": ">= 0.5", "met": True}
    assert met["large_c1_p99_ms"]["met"] is True
    assert met["cold_large_added_p50_ms"]["met"] is True
    assert met["service_errors"]["met"] is True
    missed = evaluate_targets(_results(service_rps=999, p99_c1=20.0, non_2xx=3))
    assert missed["large_c8_throughput_ratio"]["met"] is False
    assert missed["large_c1_p99_ms"]["met"] is False
    assert missed["service_errors"] == {"value": 3, "target": "0", "met": False}


def test_cold_target_is_not_judged_when_the_service_fetched_nothing():
    results = _results(service_rps=1000, p99_c1=12)
    results["cold"]["large"]["service_fetched"] = 0
    assert "cold_large_added_p50_ms" not in evaluate_targets(results)


def test_stage_timings_come_from_the_service_request_log_lines():
    lines = [
        '{"msg": "request", "path": "/cds-services/diazepam-order-sign", "duration_ms": 4.0,'
        f' "timings_ms": {{"fetch_ms": {v}, "prefetch_ms": 0.1}}}}'
        for v in (10, 20, 30)
    ]
    lines += [
        '{"msg": "request", "path": "/health", "duration_ms": 1.0}',
        "[2026-01-01] gunicorn banner",
        '{"msg": "patient data", "timings_ms": {"fetch_ms": 999}}',
    ]
    summary = timing_summary("\n".join(lines), "diazepam-order-sign")
    assert summary["requests"] == 3
    assert summary["fetch_ms"] == {"n": 3, "p50_ms": 20.0, "p99_ms": 30.0}
    assert summary["total"]["p50_ms"] == 4.0


def test_table_shows_each_figure_with_its_ratio():
    results = _results(service_rps=1000, p99_c1=12)
    results["warm"]["large"]["1"]["service_stages"] = {
        "requests": 10,
        "total": {"n": 10, "p50_ms": 9.0, "p99_ms": 12.0},
        "rules_ms": {"n": 10, "p50_ms": 2.0, "p99_ms": 3.0},
        "auth": {"n": 10, "p50_ms": 1.5, "p99_ms": 2.5},
        "unknown_ms": {"n": 10, "p50_ms": 7.0, "p99_ms": 7.0},
    }
    results["targets"] = evaluate_targets(results)
    table = render_markdown(results)
    assert "| large | 8 | 2000 | 1000 | 0.50 | 4.00 | 8.00 | 2.00 | 8.00 | 16.00 | 2.00 " in table
    assert "| 31.0 | 93.0 | 3.00 |" in table  # peak RSS: worst worker of each, and the ratio
    assert "| large | 500 (500) | 20.00 | 25.00 | 30.00 | 12.00 | 14.00 | 16.00 | 8.00 |" in table
    assert "| large_c1_p99_ms | 12 | < 20.0 | yes |" in table
    assert "| stage | auth | rules_ms | total |" in table  # pipeline order, known stages only
    assert "| p50 | 1.50 | 2.00 | 9.00 |" in table


def test_parse_wrk_output_reads_the_lua_summary_line():
    stdout = (
        "Running 1s test @ http://x\n"
        'BENCH_JSON {"requests":1200,"duration_us":2000000,"bytes":5,'
        '"errors":{"connect":1,"read":0,"write":0,"status":7,"timeout":2},'
        '"latency_us":{"p50":1500,"p90":2000,"p95":2500,"p99":4000,"max":9000,"mean":1600.0}}\n'
    )
    result = parse_wrk_output(stdout, connections=8)
    assert result.rps == 600
    assert (result.non_2xx, result.socket_errors) == (7, 3)
    assert (result.p50_ms, result.p95_ms, result.p99_ms, result.max_ms) == (1.5, 2.5, 4.0, 9.0)


def test_percentile_is_nearest_rank():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile([3.0], 95) == 3.0
    assert percentile([], 50) == 0.0


def test_wrk_never_gets_more_threads_than_connections():
    assert [wrk_threads(c) for c in (1, 2, 8, 32)] == [1, 2, 2, 2]


def test_cpu_per_call_table_shows_the_floor_to_service_ratio():
    results = _results(900, 12)
    results["warm"]["large"]["8"]["cpu_ms_per_request"] = {"floor": 1.2, "service": 4.8}
    table = render_markdown(results)
    assert "| large | 8 | 1.200 | 4.800 | 0.25 |" in table
    # points measured before CPU accounting existed still render
    assert "| large | 1 |" not in table.split("CPU per call")[1]


def test_worker_cpu_time_is_read_from_proc(tmp_path):
    from bench.procs import cpu_seconds, workers_cpu_seconds

    tick = __import__("os").sysconf("SC_CLK_TCK")
    for pid, ppid, utime, stime in ((10, 1, 0, 0), (11, 10, 3 * tick, tick), (12, 10, tick, 0)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "status").write_text(f"Name:\tx\nPPid:\t{ppid}\n")
        # comm with a space and a parenthesis, as gunicorn's "gunicorn: worker [app)]" can be
        fields = ["S", str(ppid)] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 20
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (gun (w) x) " + " ".join(fields))
    assert cpu_seconds(11, tmp_path) == 4.0
    assert workers_cpu_seconds(10, tmp_path) == 5.0
    assert cpu_seconds(99, tmp_path) is None


def test_latency_figures_moved_from_the_tests_are_judged_as_targets():
    latency = {
        "engine": {"p50_ms": 1.5},
        "deadline": {
            "deadline_ms": 600,
            "hung_fhir_200": {"max_ms": 700.0},
            "hung_fhir_412": {"max_ms": 700.1},
            "four_queries_of_250_ms": {
                "queries": 4,
                "sequential_would_take_ms": 1000.0,
                "p50_ms": 624.9,
            },
            "broken_fhir_500": {"max_ms": 600.0},
        },
    }
    targets = evaluate_targets({"latency": latency})
    assert targets["engine_advise_p50_ms"]["met"] is True
    assert targets["hung_fhir_200_max_ms"]["met"] is True
    assert targets["hung_fhir_412_max_ms"]["met"] is False  # over the deadline + 100 ms
    assert targets["four_queries_of_250_ms_p50"]["met"] is True
    assert targets["broken_fhir_500_max_ms"]["met"] is False  # not under the deadline
    latency["engine"]["p50_ms"] = 25.0
    assert evaluate_targets({"latency": latency})["engine_advise_p50_ms"]["met"] is False
    assert "| hung_fhir_412_max_ms | 700.1 |" in render_markdown(
        {"latency": latency, "targets": targets}
    )


def _two_floor_point(service_rps: float, noauth_rps: float) -> dict:
    return {
        "floor": _point(2000, 4, 8, 10),
        "protocol_floor": _point(800, 9, 12, 15),
        "service": _point(service_rps, 20, 30, 40),
        "service_noauth": _point(noauth_rps, 10, 20, 30),
        "cpu_ms_per_request": {
            "floor": 0.5,
            "protocol_floor": 1.25,
            "service": 2.5,
            "service_noauth": 2.0,
        },
    }


def test_issue_15_targets_compare_auth_on_with_the_protocol_floor_and_off_with_the_bare():
    results = {"warm": {"small": {"8": _two_floor_point(400, 1000)}}}
    met = evaluate_targets(results)
    assert met["small_c8_auth_on_vs_protocol_floor"] == {
        "value": 0.5,
        "target": ">= 0.5",
        "met": True,
    }
    assert met["small_c8_auth_off_vs_bare_floor"]["met"] is True
    assert "small_c8_throughput_ratio" not in met
    missed = evaluate_targets({"warm": {"small": {"8": _two_floor_point(399, 999)}}})
    assert missed["small_c8_auth_on_vs_protocol_floor"]["met"] is False
    assert missed["small_c8_auth_off_vs_bare_floor"]["met"] is False


def test_two_floor_table_shows_both_floors_both_services_ratios_and_cpu():
    results = {"warm": {"small": {"8": _two_floor_point(400, 500)}}}
    results["warm"]["small"]["8"]["protocol_floor"]["non_2xx"] = 2
    results["targets"] = evaluate_targets(results)
    table = render_markdown(results)
    assert "| small | 8 | 2000 | 800 | 400 | 0.50 | 500 | 0.25 |" in table
    assert "| small | 8 | 4.00 / 10.00 | 9.00 / 15.00 | 20.00 / 40.00 | 10.00 / 30.00 |" in table
    assert "| small | 8 | 0.500 | 1.250 | 2.500 | 2.000 | 0.50 | 0.25 |" in table
    assert "| service_errors | 2 | 0 | no |" in table  # a floor refusing tokens is an error too
