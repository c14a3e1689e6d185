"""Start a real ``diazepam-cds serve`` (gunicorn) process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        """The gunicorn master's live child processes, i.e. its workers (Linux ``/proc``).

        Read from the process table, not from gunicorn's INFO "Booting worker" lines, so it
        holds whatever ``CDS_LOG_LEVEL`` the server runs with."""
        return child_pids(self.process.pid)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (gunicorn master and workers)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=15)


def child_pids(parent: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``parent``, from ``/proc/<pid>/stat``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def start_server(
    tmp_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    workers: int = 2,
    port: int | None = None,
) -> RunningServer:
    port = port or free_port()
    full_env = {
        **os.environ,
        "CDS_DATA_DIR": str(tmp_dir / "data"),
        "CDS_LOG_LEVEL": "INFO",
        # production refuses to start without these (config.check_startup): the URL the
        # tests call is the public one, and a fixed test-only key
        "CDS_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
        "CDS_PATIENT_HASH_KEY": "test-only-patient-hash-key",
        # production `serve` needs the site's code system base (CDS_CANONICAL_BASE)
        "CDS_CANONICAL_BASE": "https://cds.test.example/fhir",
    }
    full_env.update(env or {})
    exe = Path(sys.executable).with_name("diazepam-cds")
    command = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = launch(command + ["--workers", str(workers)], port, tmp_dir, full_env, name="server")
    # /health answers as soon as one worker is up; tests that count workers or spread
    # requests across them need all of them forked (at any log level: see worker_pids).
    deadline = time.monotonic() + 30
    while len(server.worker_pids()) < workers:
        if time.monotonic() > deadline or server.process.poll() is not None:
            server.kill()
            raise RuntimeError(f"not all {workers} workers booted:\n{server.log_text()}")
        time.sleep(0.05)
    return server


def launch(
    command: list[str], port: int, tmp_dir: Path, env: Mapping[str, str], *, name: str
) -> RunningServer:
    """Start an HTTP server process in its own process group; return once /health answers."""
    log_path = tmp_dir / f"{name}-{port}.log"
    process = subprocess.Popen(
        command,
        env=dict(env),
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,
    )
    server = RunningServer(process, port, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{server.log_text()}")
        try:
            if requests.get(f"{server.base_url}/health", timeout=1).status_code in (200, 503):
                return server
        except requests.RequestException:
            time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"{name} did not start in 30 s:\n{server.log_text()}")


@contextmanager
def running_server(
    tmp_dir: Path, env: Mapping[str, str] | None = None, *, workers: int = 2
) -> Iterator[RunningServer]:
    server = start_server(tmp_dir, env, workers=workers)
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)
