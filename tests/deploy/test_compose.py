"""docker-compose.yml, validated by the official Compose binary without a Docker engine."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from cds_service.config import SETTINGS, Settings
from tests.deploy.deploy_files import (
    COMPOSE_FILE,
    REPO,
    REQUIRED_VARS,
    SCALE_FILE,
    resolved_compose,
    run_compose,
)

KNOWN_SETTINGS = set(SETTINGS) | {"CDS_" + f.name.upper() for f in fields(Settings)}


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return resolved_compose(tmp_path_factory.mktemp("compose"))


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return resolved_compose(tmp_path_factory.mktemp("scaled"), files=(COMPOSE_FILE, SCALE_FILE))


@pytest.mark.parametrize(
    "files", [(COMPOSE_FILE,), (COMPOSE_FILE, SCALE_FILE)], ids=["base", "scale"]
)
def test_compose_config_quiet_passes(files: tuple[Path, ...], tmp_path: Path) -> None:
    result = run_compose(
        ["config", "--quiet"], env=REQUIRED_VARS, files=files, tmp_env_file=tmp_path / "e.env"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARS))
def test_compose_refuses_to_run_without_its_secrets(missing: str, tmp_path: Path) -> None:
    # No shipped default password or hash key: a forgotten secret stops `up` with a message.
    env = {k: v for k, v in REQUIRED_VARS.items() if k != missing}
    result = run_compose(["config", "--quiet"], env=env, tmp_env_file=tmp_path / "e.env")
    assert result.returncode != 0
    assert missing in result.stderr


def _bind_sources(config: dict[str, Any]) -> list[tuple[str, Path]]:
    found = []
    for name, service in config["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                found.append((name, Path(volume["source"])))
    return found


@pytest.mark.parametrize("which", ["compose", "scaled"])
def test_everything_mounted_or_built_exists(which: str, request: pytest.FixtureRequest) -> None:
    config = request.getfixturevalue(which)
    missing = []
    for service, source in _bind_sources(config):
        if not source.exists():
            missing.append(f"{service}: {source}")
    for name, service in config["services"].items():
        build = service.get("build")
        if build:
            context = Path(build["context"])
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                missing.append(f"{name}: build {context}/{build.get('dockerfile')}")
    assert not missing, "compose mounts or builds paths that do not exist: " + ", ".join(missing)
    # And the mounts stay inside the repository (nothing from a developer's machine).
    assert all(source.resolve().is_relative_to(REPO) for _, source in _bind_sources(config))


@pytest.mark.parametrize("which", ["compose", "scaled"])
def test_published_ports_bind_loopback_by_default(which: str, request: pytest.FixtureRequest):
    config = request.getfixturevalue(which)
    published = [
        (name, port)
        for name, service in config["services"].items()
        for port in service.get("ports", [])
    ]
    assert published, "something must be reachable from the host"
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_bind_address_is_configurable(tmp_path: Path) -> None:
    config = resolved_compose(tmp_path, env={"CDS_BIND": "10.1.2.3", "CDS_HOST_PORT": "9443"})
    (port,) = config["services"]["cds"]["ports"]
    assert (port["host_ip"], port["published"], port["target"]) == ("10.1.2.3", "9443", 8080)


def test_service_environment_uses_only_known_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["cds"]["environment"]
    unknown = {k for k in env if k.startswith("CDS_")} - KNOWN_SETTINGS
    assert not unknown, f"compose sets CDS_ variables the service does not read: {unknown}"
    # Empty values would count as explicitly set and override profile defaults.
    assert all(value not in (None, "") for k, value in env.items() if k != "CDS_PUBLIC_BASE_URL")


def test_service_uses_postgres_with_the_compose_password(compose: dict[str, Any]) -> None:
    services = compose["services"]
    url = services["cds"]["environment"]["CDS_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://cds:")
    assert f":{REQUIRED_VARS['POSTGRES_PASSWORD']}@db:5432/" in url
    db_env = services["db"]["environment"]
    assert url.endswith("/" + db_env["POSTGRES_DB"])
    assert db_env["POSTGRES_PASSWORD"] == REQUIRED_VARS["POSTGRES_PASSWORD"]
    assert (
        services["cds"]["environment"]["CDS_PATIENT_HASH_KEY"]
        == REQUIRED_VARS["CDS_PATIENT_HASH_KEY"]
    )


def test_start_order_waits_for_health_where_images_allow(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["cds"]["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["db"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    # HAPI's image has no shell or curl: no health check to wait on; the loader polls instead.
    assert "healthcheck" not in services["hapi"]
    seed = services["fhir-seed"]
    assert seed["depends_on"]["hapi"]["condition"] == "service_started"
    assert "--wait" in seed["command"]
    assert float(seed["command"][seed["command"].index("--wait") + 1]) >= 120
    assert seed["restart"] == "no"


def test_fhir_server_is_r4_and_seeded_from_fixtures(compose: dict[str, Any]) -> None:
    services = compose["services"]
    hapi = services["hapi"]
    assert hapi["image"].startswith("hapiproject/hapi:")
    assert hapi["environment"]["hapi.fhir.fhir_version"] == "R4"
    seed = services["fhir-seed"]
    mounts = {Path(v["source"]).resolve(): v for v in seed["volumes"]}
    script = mounts[(REPO / "deploy" / "fhir_seed.py").resolve()]
    fixtures = mounts[(REPO / "fixtures").resolve()]
    assert script["read_only"] and fixtures["read_only"]
    assert script["target"] in seed["command"] and fixtures["target"] in seed["command"]
    base = seed["command"][seed["command"].index("--base") + 1]
    assert base.startswith("http://hapi:")
    # The service may call that plain-http FHIR server only because it is allow-listed.
    assert services["cds"]["environment"]["CDS_FHIR_ALLOWLIST"] == "hapi"


def test_trusted_issuers_mounted_read_only_and_valid(compose: dict[str, Any]) -> None:
    from cds_service.security.issuers import load_issuers_file

    cds = compose["services"]["cds"]
    target = Path(cds["environment"]["CDS_TRUSTED_ISSUERS"])
    (mount,) = [
        v for v in cds["volumes"] if v["type"] == "bind" and target.is_relative_to(v["target"])
    ]
    assert mount["read_only"] is True
    host_file = Path(mount["source"]) / target.relative_to(mount["target"])
    issuers = load_issuers_file(host_file, cache_s=300)  # the service's own loader
    assert issuers, "the example issuers file trusts nobody"
    assert {i.profile for i in issuers.values()} >= {"standard", "epic"}


def test_named_volumes_hold_the_state(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def named(service: str) -> dict[str, str]:
        return {
            v["target"]: v["source"]
            for v in services[service].get("volumes", [])
            if v["type"] == "volume"
        }

    assert named("db")["/var/lib/postgresql/data"] in compose["volumes"]
    assert named("cds")["/var/lib/diazepam-cds"] in compose["volumes"]


def test_service_container_is_locked_down(compose: dict[str, Any]) -> None:
    cds = compose["services"]["cds"]
    assert cds["read_only"] is True
    assert "/tmp" in cds["tmpfs"]
    # Metrics files are per-process and per-container: never on the shared volume.
    assert cds["environment"]["CDS_METRICS_DIR"].startswith("/tmp/")
    assert cds["cap_drop"] == ["ALL"]


def test_scale_overlay_puts_replicas_behind_one_balancer(scaled: dict[str, Any]) -> None:
    services = scaled["services"]
    assert not services["cds"].get("ports"), "replicas cannot share one published port"
    (lb_port,) = services["lb"]["ports"]
    assert (lb_port["host_ip"], lb_port["published"]) == ("127.0.0.1", "8080")
    assert services["lb"]["depends_on"]["cds"]["condition"] == "service_healthy"
    (conf,) = [v for v in services["lb"]["volumes"] if v["type"] == "bind"]
    text = Path(conf["source"]).read_text(encoding="utf-8")
    assert "server cds:8080" in text
    assert f"listen {lb_port['target']};" in text
    # The JWT aud check needs the Host the EHR used.
    assert "proxy_set_header Host $http_host;" in text


def test_stack_has_exactly_the_checked_services(compose: dict[str, Any]) -> None:
    # A new service needs its own checks above before it joins the stack.
    assert sorted(compose["services"]) == ["cds", "db", "fhir-seed", "hapi"]
