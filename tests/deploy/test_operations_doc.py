"""docs/operations.md against the code, read at test time so drift fails the suite: settings
and their defaults, prefetch templates, service ids, metric names, log fields, commands."""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import MISSING, fields

import pytest

from cds_service import cli
from cds_service.config import SETTINGS, Settings
from cds_service.discovery import PREFETCH_TEMPLATES, SERVICES
from tests.deploy.deploy_files import REPO

DOC_PATH = REPO / "docs" / "operations.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
FIELD_NAMES = {"CDS_" + f.name.upper(): f for f in fields(Settings)}


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", DOC, re.S | re.M)
    assert match, f"section '## {title}' missing from {DOC_PATH.name}"
    return match.group(1)


def _table_rows(text: str) -> list[list[str]]:
    """Body rows of every Markdown table in ``text`` (a header is the row before ``|---|``)."""
    rows: list[list[str]] = []
    for line in (raw.strip() for raw in text.splitlines()):
        if re.fullmatch(r"\|[-| :]+\|", line):
            rows.pop()  # the header just read
        elif line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def _documented_settings() -> dict[str, tuple[str, str]]:
    table = _table_rows(_section("Configuration"))
    documented: dict[str, tuple[str, str]] = {}
    for name_cell, default, meaning in table:
        name = name_cell.strip("`")
        assert name not in documented, f"{name} documented twice"
        documented[name] = (default, meaning)
    return documented


def test_config_module_declares_every_field_it_reads() -> None:
    # SETTINGS (the documented list in code) and the dataclass must agree with each other.
    assert set(SETTINGS) - {"CDS_CONFIG_FILE"} == set(FIELD_NAMES)


def test_every_setting_is_documented_and_nothing_else() -> None:
    documented = set(_documented_settings())
    in_code = set(SETTINGS) | set(FIELD_NAMES)
    assert documented - in_code == set(), "documented but not read by the service"
    assert in_code - documented == set(), "read by the service but not in docs/operations.md"


def _rendered_default(value: object) -> str | None:
    """How a plain default is written in the table; None for 'no value' (written as —)."""
    if value in ("", ()):
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


@pytest.mark.parametrize("name", sorted(FIELD_NAMES))
def test_documented_default_matches_the_dataclass(name: str) -> None:
    default_cell, meaning = _documented_settings()[name]
    assert meaning, f"{name}: no meaning documented"
    field = FIELD_NAMES[name]
    if field.default is MISSING:  # computed at run time (default_factory): described in words
        assert default_cell
        return
    expected = _rendered_default(field.default)
    if expected is None:
        assert default_cell.startswith("—"), f"{name}: default is unset, doc says {default_cell}"
    else:
        assert default_cell.startswith(f"`{expected}`"), (
            f"{name}: default is {expected!r}, doc says {default_cell!r}"
        )


def test_prefetch_templates_are_the_ones_discovery_announces() -> None:
    section = _section("Register the service in an EHR")
    rows = {
        key.strip("`"): template.strip("`")
        for key, template in (r[:2] for r in _table_rows(section) if len(r) == 2)
    }
    assert rows == PREFETCH_TEMPLATES


def test_service_ids_and_hooks_are_the_ones_discovery_announces() -> None:
    section = _section("Register the service in an EHR")
    rows = {r[0].strip("`"): r[1].strip("`") for r in _table_rows(section) if len(r) == 3}
    assert rows == {s.id: s.hook for s in SERVICES.values()}


def test_metric_names_are_the_ones_exposed() -> None:
    from cds_service.metrics import Metrics

    exposed = set(re.findall(r"^# TYPE (\S+) (\w+)", Metrics().exposition().decode(), re.M))
    documented = {
        (row[0].strip("`"), row[1]) for row in _table_rows(_section("Metrics")) if len(row) == 3
    }
    assert documented == exposed


def test_request_log_fields_are_documented(client, sandbox_request) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    logger = logging.getLogger("cds_service.request")
    logger.addHandler(handler)
    try:
        body = sandbox_request("order-sign-request_r4-server")
        client.post("/cds-services/diazepam-order-sign", json=body)
        client.get("/cds-services")
    finally:
        logger.removeHandler(handler)
    standard = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message"}
    logged = {
        key
        for record in records
        if record.getMessage() == "request"
        for key in record.__dict__
        if key not in standard and not key.startswith("_")
    }
    assert logged, "no request log line captured"
    documented: set[str] = set()
    for row in _table_rows(_section("Logs")):
        documented |= set(re.findall(r"`(\w+)`", row[0]))
    assert logged <= documented, f"logged but not documented: {logged - documented}"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_commands_and_options_in_the_doc_exist() -> None:
    cli._load_plugins()
    top = _subcommands(cli.build_parser())
    text = DOC.replace("\\\n", " ")  # shell line continuations
    pattern = r"(?:diazepam-cds|run --rm cds) ([a-z]+)(?: ([a-z]+))?([^\n`]*)"
    mentioned = re.findall(pattern, text)
    assert ("db", "upgrade") in {(name, sub) for name, sub, _ in mentioned}
    for name, sub, rest in mentioned:
        assert name in top, f"docs mention `diazepam-cds {name}`, which does not exist"
        parser = top[name]
        nested = _subcommands(parser)
        if nested and sub:
            assert sub in nested, f"docs mention `diazepam-cds {name} {sub}`"
            parser = nested[sub]
        for option in re.findall(r"(?<![\w-])--[a-z][a-z-]*", rest):
            assert option in parser._option_string_actions, f"`diazepam-cds {name}` {option}"


def test_paths_the_doc_names_exist() -> None:
    named = set(re.findall(r"`((?:deploy|docs|examples|fixtures|cds_service)/[\w./-]+)`", DOC))
    named |= {"Dockerfile", "docker-compose.yml"}
    missing = sorted(p for p in named if not (REPO / p).exists())
    assert not missing, missing


def test_doc_links_to_its_own_sections() -> None:
    anchors = set(re.findall(r"\]\(#([\w-]+)\)", DOC))
    titles = re.findall(r"^## (.+)$", DOC, re.M)
    slugs = {re.sub(r"[^\w\- ]", "", t).strip().lower().replace(" ", "-") for t in titles}
    assert anchors <= slugs, anchors - slugs


def test_readme_points_here() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/operations.md" in readme
