"""Card templates: validated at start-up (a bad one stops the app with a clear message), and
every variant renders a spec-valid summary."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from cds_service.app import create_app
from cds_service.clinical.cards import TOPICS, TemplateError, load_templates, placeholders
from cds_service.compare import SUMMARY_MAX
from cds_service.config import REPO_DIR

CARDS = REPO_DIR / "cards"


def test_shipped_templates_cover_every_topic_and_link_primary_sources():
    templates = load_templates(CARDS)
    assert set(templates) == set(TOPICS)
    urls = {link["url"] for t in templates.values() for link in t.links}
    assert any("dailymed.nlm.nih.gov" in u for u in urls)
    assert "https://doi.org/10.1111/jgs.18372" in urls
    assert any("rr7103a1" in u for u in urls)  # CDC 2022
    assert "https://doi.org/10.7326/M16-2367" in urls  # ACP 2017
    for template in templates.values():
        assert all(r["display"] for r in template.data["override_reasons"])


@pytest.mark.parametrize("topic", TOPICS)
def test_worst_case_summary_fits(topic):
    template = load_templates(CARDS)[topic]
    for variant in template.data["variants"].values():
        filled = variant["summary"]
        for name in placeholders(filled):
            filled = filled.replace("{" + name + "}", "x" * 12)  # generous stand-in value
        # CDS Hooks 2.0: summary "<140 characters". The renderer's trim is a last resort that
        # cuts the clinical text mid-sentence, so a template must fit without it.
        assert len(filled) < SUMMARY_MAX, (topic, len(filled), filled)
        # second review N5: evidence is in the links (each label says what it supports),
        # never a "Sources:" line in the detail
        assert not re.search(r"(?m)^\**Sources?:", variant["detail"]), (topic, variant["detail"])
    assert template.links


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(CARDS, target)
    return target


def _mutate(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("file", "change", "message"),
    [
        ("duration-limit.json", lambda d: d.pop("source"), "'source' is a required property"),
        ("dose-limit.json", lambda d: d["override_reasons"][0].pop("display"), "display"),
        ("taper-required.json", lambda d: d["links"].append("nowhere"), "unknown link keys"),
        (
            "pregnancy-lactation.json",
            lambda d: d["variants"]["pregnancy"].update(summary="x" * 150),
            "too long",
        ),
        ("beers-cns-active.json", lambda d: d["topic"].update(code="beers-other"), "topic"),
    ],
)
def test_bad_template_stops_start_up_naming_the_file(tmp_path, file, change, message):
    cards = _copy(tmp_path)
    _mutate(cards / file, change)
    with pytest.raises(TemplateError, match=message) as info:
        create_app({"auth": "disabled", "data_dir": str(tmp_path / "d"), "cards_dir": str(cards)})
    assert file in str(info.value) or "topic" in message


def test_missing_template_and_broken_json(tmp_path):
    cards = _copy(tmp_path)
    (cards / "indication-missing.json").unlink()
    with pytest.raises(TemplateError, match="indication-missing"):
        load_templates(cards)
    (cards / "links.json").write_text("{")
    with pytest.raises(TemplateError, match="unreadable"):
        load_templates(cards)


def test_a_variant_may_name_its_own_links(tmp_path):
    """F.0-7: a variant whose claims rest on other sources links those, not the topic's."""
    cards = _copy(tmp_path)
    _mutate(
        cards / "muscle-relaxant-alternative.json",
        lambda d: d["variants"]["anxiety"].update(links=["fda_label"]),
    )
    template = load_templates(cards)["muscle-relaxant-alternative"]
    assert [link["url"] for link in template.links_for("anxiety")] == [
        json.loads((cards / "links.json").read_text())["fda_label"]["url"]
    ]
    assert template.links_for("default") == template.links  # the template's own
    assert template.links_for("no-such-variant") == template.links  # renders as default
    _mutate(
        cards / "muscle-relaxant-alternative.json",
        lambda d: d["variants"]["anxiety"].update(links=["nowhere"]),
    )
    with pytest.raises(TemplateError, match="unknown link keys"):
        load_templates(cards)
