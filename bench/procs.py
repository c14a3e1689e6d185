"""Server processes for the benchmark: the floor app beside the real service, and their RSS.

The service is started with the test suite's own launcher (``tests/support/server.py``: the
real ``diazepam-cds serve``); the floor gets the same treatment here (own process group, log
file, wait for /health) so the two differ only in the app they load.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.server import RunningServer, free_port, launch


def start_floor(
    tmp_dir: Path,
    *,
    workers: int = 2,
    kind: str = "bare",
    jwks: Path | None = None,
    iss: str | None = None,
) -> RunningServer:
    """The bare floor, or with ``kind="protocol"`` the protocol floor trusting ``iss`` with
    the keys of ``jwks`` (bench/floor_app.py)."""
    port = free_port()
    command = [sys.executable, "-m", "bench.floor_app", "--port", str(port), "--kind", kind]
    if kind == "protocol":
        command += ["--jwks", str(jwks), "--iss", str(iss)]
    env = {**os.environ, "CDS_LOG_LEVEL": "WARNING"}
    name = "floor" if kind == "bare" else f"{kind}-floor"
    return launch(command + ["--workers", str(workers)], port, tmp_dir, env, name=name)


def child_pids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """Direct children of ``pid`` (gunicorn workers of a master), from /proc."""
    children: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("PPid:"):
                if int(line.split()[1]) == pid:
                    children.append(int(entry.name))
                break
    return sorted(children)


def status_kib(pid: int, field: str, proc: Path = Path("/proc")) -> int | None:
    """A ``kB`` field (VmHWM: peak resident set; VmRSS: current) of /proc/<pid>/status."""
    try:
        text = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def workers_peak_rss_mib(master_pid: int) -> list[float]:
    """Peak RSS (VmHWM) of each gunicorn worker, MiB: what a worker costs under load."""
    peaks = [status_kib(pid, "VmHWM") for pid in child_pids(master_pid)]
    return [round(p / 1024, 1) for p in peaks if p is not None]


def cpu_seconds(pid: int, proc: Path = Path("/proc")) -> float | None:
    """User + system CPU time of a process, all its threads, from /proc/<pid>/stat."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # stat fields 14 and 15
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def workers_cpu_seconds(master_pid: int, proc: Path = Path("/proc")) -> float:
    """CPU time used so far by all gunicorn workers of a master (sum over workers)."""
    used = [cpu_seconds(pid, proc) for pid in child_pids(master_pid, proc)]
    return sum(u for u in used if u is not None)
