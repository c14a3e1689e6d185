"""Run a real FHIR R4 server (PyPI ``sekmet-fhir``) on a free loopback port for tests.

It lives in its own virtual environment (``make fhir-server`` → ``.venv-fhir``) so its pins
cannot clash with ours; we only talk to it over HTTP, like to any EHR. Each instance gets a
fresh data directory, a static bearer token and the workflow simulator off (it would otherwise
react to the MedicationRequests we load).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support.server import REPO, free_port

FHIR_VENV = Path(os.environ.get("CDS_TEST_FHIR_VENV", REPO / ".venv-fhir"))
SEKMET = FHIR_VENV / "bin" / "sekmet"
INSTALL_HINT = "run `make fhir-server` (creates .venv-fhir with sekmet-fhir==0.1.1)"


def available() -> bool:
    return SEKMET.is_file() and os.access(SEKMET, os.X_OK)


@dataclass
class FhirServer:
    process: subprocess.Popen[bytes]
    port: int
    token: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {token or self.token}",
            "Accept": "application/fhir+json",
            "Content-Type": "application/fhir+json",
        }

    def transaction(self, resources: list[dict[str, Any]]) -> dict[str, Any]:
        """Load resources (with ids) in one transaction Bundle of PUTs; fail loudly if refused."""
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "resource": r,
                    "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                }
                for r in resources
            ],
        }
        response = requests.post(
            self.base_url, data=json.dumps(bundle), headers=self.headers(), timeout=30
        )
        if response.status_code != 200:
            raise AssertionError(
                f"FHIR server refused the transaction ({response.status_code}): "
                f"{response.text[:2000]}"
            )
        return response.json()

    def get(self, relative: str) -> requests.Response:
        return requests.get(f"{self.base_url}/{relative}", headers=self.headers(), timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def start_fhir_server(tmp_dir: Path, token: str = "test-fhir-token") -> FhirServer:
    if not available():
        raise RuntimeError(f"sekmet-fhir is not installed at {SEKMET}: {INSTALL_HINT}")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "base_url": f"http://127.0.0.1:{port}/fhir",
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(tmp_dir / "data"),
        "simulator": {"enabled": False},
        "server_auth": {"types": ["bearer"], "tokens": [token]},
        "validation": {"inbound": "strict"},
        "log_inbound": False,
        "own_private_key_path": str(tmp_dir / "keys" / "sekmet_private.pem"),
    }
    config = tmp_dir / "settings.yaml"
    config.write_text(json.dumps(settings), encoding="utf-8")  # JSON is valid YAML
    log_path = tmp_dir / f"fhir-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [str(SEKMET), "serve", "--config", str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp_dir,
            env=env,
            start_new_session=True,
        )
    server = FhirServer(process, port, token, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"FHIR server exited early:\n{server.log_text()}")
        try:
            if requests.get(f"{server.base_url}/metadata", timeout=1).status_code == 200:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"FHIR server did not start in 30 s:\n{server.log_text()}")
