from __future__ import annotations

import json
from dataclasses import fields

import pytest

from cds_service.config import SETTINGS, ConfigError, Settings, load_settings


def test_defaults():
    settings = load_settings(environ={})
    assert settings.port == 8080
    assert settings.max_body_bytes == 1024 * 1024
    assert settings.auth == "required"
    assert settings.allowed_origins == ()
    assert settings.resolved_database_url().startswith("sqlite:///")


def test_environment_is_read_and_coerced():
    settings = load_settings(
        environ={
            "CDS_PORT": "9000",
            "CDS_ALLOWED_ORIGINS": "https://a, https://b",
            "CDS_AUTH": "disabled",
        }
    )
    assert settings.port == 9000
    assert settings.allowed_origins == ("https://a", "https://b")
    assert settings.auth == "disabled"


def test_development_defaults_open_cors():
    assert load_settings(environ={"CDS_ENV": "development"}).allowed_origins == ("*",)
    explicit = load_settings(environ={"CDS_ENV": "development", "CDS_ALLOWED_ORIGINS": "https://x"})
    assert explicit.allowed_origins == ("https://x",)


def test_config_file_then_env(tmp_path):
    path = tmp_path / "cds.json"
    path.write_text(json.dumps({"CDS_PORT": 9100, "CDS_DEADLINE_MS": 1500}))
    settings = load_settings(environ={"CDS_CONFIG_FILE": str(path), "CDS_PORT": "9200"})
    assert settings.port == 9200 and settings.deadline_ms == 1500


@pytest.mark.parametrize(
    "environ",
    [
        {"CDS_PORT": "eighty"},
        {"CDS_AUTH": "maybe"},
        {"CDS_ENV": "staging"},
        {"CDS_MAX_BODY_BYTES": "0"},
    ],
)
def test_bad_values_stop_start_up(environ):
    with pytest.raises(ConfigError):
        load_settings(environ=environ)


def test_every_field_is_documented():
    documented = {name.removeprefix("CDS_").lower() for name in SETTINGS}
    assert {f.name for f in fields(Settings)} <= documented


def test_readme_documents_every_setting():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    missing = [name for name in SETTINGS if f"`{name}`" not in readme]
    assert not missing, f"README lacks: {missing}"
