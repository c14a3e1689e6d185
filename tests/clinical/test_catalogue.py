"""The rule catalogue: docs/clinical-rules.md is generated from the policy and the card templates
(``diazepam-cds rules --markdown``), stays in step with them, and reads whatever topics exist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cds_service.cli import main
from cds_service.clinical.cards import Template, TemplateError, load_templates
from cds_service.clinical.catalogue import (
    NOT_DESCRIBED,
    NOT_STATED,
    REGENERATE,
    CatalogueError,
    basis_of,
    generate,
    load_inputs,
    policy_rows,
    render_markdown,
)
from cds_service.config import REPO_DIR

CARDS = REPO_DIR / "cards"
DOC = REPO_DIR / "docs" / "clinical-rules.md"


@pytest.fixture(scope="module")
def shipped() -> str:
    return generate()


def _topics(cards: Path) -> list[str]:
    return sorted(
        json.loads(p.read_text(encoding="utf-8"))["topic"]["code"]
        for p in cards.glob("*.json")
        if p.name != "links.json"
    )


def _copy(tmp_path: Path) -> Path:
    target = tmp_path / "cards"
    shutil.copytree(CARDS, target)
    return target


def _mutate(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_committed_catalogue_is_up_to_date(shipped):
    committed = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert committed == shipped, (
        "docs/clinical-rules.md is out of date with the policy or the card templates; "
        f"regenerate it with `{REGENERATE}` and commit the result"
    )


def test_every_topic_in_cards_has_a_section_and_is_described(shipped):
    topics = _topics(CARDS)
    assert topics, "no card templates found"
    for topic in topics:
        assert f"\n## `{topic}`: " in shipped, topic
        assert f'<a id="{topic}"></a>' in shipped, topic
        assert f"[`{topic}`](#{topic})" in shipped, topic
    undescribed = [t for t in topics if "catalogue" not in load_templates(CARDS)[t].data]
    assert not undescribed, (
        f"card templates without a catalogue block: {undescribed}; add one (rule, fires_when, "
        f"suggests, indicators, policy_keys) and run `{REGENERATE}`"
    )
    assert NOT_DESCRIBED not in shipped


def test_header_says_generated_how_and_names_the_policy_version(shipped):
    head = shipped.split("\n## ")[0]
    assert "do not edit by hand" in head.lower()
    assert REGENERATE in head
    version = json.loads((REPO_DIR / "cds_service/data/policy.json").read_text())["version"]
    assert f"Policy version: **{version}**" in head


def test_output_is_deterministic(shipped):
    assert generate() == shipped
    assert shipped.endswith("\n") and not shipped.endswith("\n\n")


def test_sections_carry_levels_thresholds_with_basis_overrides_and_sources(shipped):
    taper = shipped.split("\n## `taper-required`")[1].split("\n## ")[0]
    assert "**Knowledge-base row:** R13" in taper
    assert "`cds_service/clinical/rules/taper.py`" in taper
    # R13 is a warning with the first taper step; a stated long-term indication is info
    assert (
        "| `warning` | a long-term user with no stated long-term indication, not in hospice "
        "| default, default_solution | `taper.indicator` |"
    ) in taper
    assert "| legit, legit_solution | `taper.legit_indicator` |" in taper
    assert "| `default` | `warning` |" in taper and "| `legit` | `warning`, `info` |" in taper
    assert "| `windows.taper_min_days` | 28 | [D] R13" in taper
    assert "| `taper.step_pct` | 10 | [E] ASAM 2025" in taper
    # override reasons and the card source come from the template (its texts may change)
    template = json.loads((CARDS / "taper-required.json").read_text(encoding="utf-8"))
    for reason in template["override_reasons"]:
        assert f"- `{reason['code']}`: {reason['display']}" in taper
    source = template["source"]
    assert f"- Card source: [{source['label']}]({source['url']})" in taper
    assert "](https://www.cdc.gov/mmwr/volumes/71/rr/rr7103a1.htm)" in taper  # links.json
    duration = shipped.split("\n## `duration-limit`")[1].split("\n## ")[0]
    # several levels, each tied to its policy key (or the rule code) and the variants it
    # applies to; a long supply alone is at most a warning (F.0-6), in hospice info (R20)
    assert "| `warning` | more than `duration.max_days` days at" in duration
    assert "| hospice | `duration.hospice_indicator` |" in duration
    assert "| `over_max` | `warning` |" in duration
    assert "| `over_ideal` | `warning`, `info` |" in duration  # R21: COPD with an opioid
    assert "| `critical` |" not in duration
    # a basis shared from the section says where it was taken from
    assert "| `duration.max_days` | 14 | [D] seed-1" in duration
    assert "(from `duration.basis`)" in duration


def test_a_site_policy_override_shows_in_its_catalogue(tmp_path, shipped):
    site = tmp_path / "site-policy.json"
    site.write_text(
        json.dumps({"windows": {"taper_min_days": 42}, "duration": {"max_days": 21}}),
        encoding="utf-8",
    )
    out = generate(policy_file=site)
    assert "| `windows.taper_min_days` | 42 |" in out
    assert "| `duration.max_days` | 21 |" in out
    assert "site override `site-policy.json`" in out
    assert "Regenerate with `diazepam-cds rules --markdown --policy site-policy.json`" in out
    assert "a test fails" not in out and str(tmp_path) not in out
    assert "| `windows.taper_min_days` | 28 |" in shipped and "42 |" not in shipped


def test_cli_writes_the_file_or_stdout(tmp_path, capsys, shipped):
    target = tmp_path / "rules.md"
    assert main(["rules", "--markdown", "--output", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == shipped
    assert capsys.readouterr().out == ""
    assert main(["rules", "--markdown"]) == 0
    assert capsys.readouterr().out == shipped
    assert main(["rules"]) == 0
    text = capsys.readouterr().out
    assert all(topic in text for topic in _topics(CARDS))


def test_cli_policy_override(tmp_path, capsys):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"dose": {"max_mg_per_day": 30}}), encoding="utf-8")
    assert main(["rules", "--markdown", "--policy", str(site)]) == 0
    assert "| `dose.max_mg_per_day` | 30 |" in capsys.readouterr().out


def test_a_bad_site_policy_is_refused_like_at_start_up(tmp_path, capsys):
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"duration": {"max_days": "fourteen"}}), encoding="utf-8")
    assert main(["rules", "--markdown", "--policy", str(site)]) == 2
    assert "policy invalid at duration/max_days" in capsys.readouterr().err


def test_new_topic_and_variant_appear_without_code_changes(tmp_path):
    """The generator reads whatever templates exist: a new variant with its own level, and a
    topic it has never heard of (rendered directly: the loader's topic list is not its own)."""
    cards = _copy(tmp_path)

    def louder(d):
        d["catalogue"]["indicators"][0]["variants"] = ["default"]
        d["catalogue"]["indicators"].append(
            {"level": "critical", "when": "fixed in the rule", "variants": ["louder"]}
        )
        d["variants"]["louder"] = dict(d["variants"]["default"], summary="Louder {drugs}")

    _mutate(cards / "taper-required.json", louder)
    policy, templates = load_inputs(cards_dir=cards)
    new = templates["taper-required"]
    data = json.loads(json.dumps(new.data))
    data["topic"] = {"code": "zz-new-topic", "display": "A topic added later"}
    templates["zz-new-topic"] = Template("zz-new-topic", data, new.links)
    out = render_markdown(policy, templates)
    assert "\n## `zz-new-topic`: A topic added later" in out
    assert "[`zz-new-topic`](#zz-new-topic) | R13 | critical, warning, info |" in out
    assert "| `louder` | `critical` | Louder {drugs} |" in out
    assert "| `critical` | fixed in the rule | louder | (rule code) | rule code |" in out


def test_template_without_catalogue_is_marked_not_described(tmp_path, capsys):
    """Rendered with a marker, not refused: the block is documentation, and a site's own card
    directory must not stop the service (or this command) for lack of it. The shipped
    templates are held to it by the test above and by ``rules --strict``."""
    cards = _copy(tmp_path)
    _mutate(cards / "pregnancy-lactation.json", lambda d: d.pop("catalogue"))
    load_templates(cards)  # the service still starts
    out = generate(cards_dir=cards)
    section = out.split("\n## `pregnancy-lactation`")[1].split("\n## ")[0]
    assert f"**{NOT_DESCRIBED}.**" in section and "no `catalogue` block" in section
    assert "Not described: `pregnancy-lactation`" in out.split("\n## ")[0]
    assert "- `not-pregnant`:" in section  # what the template has is still shown
    assert main(["rules", "--markdown", "--cards", str(cards)]) == 0
    assert main(["rules", "--markdown", "--strict", "--cards", str(cards)]) == 1
    err = capsys.readouterr().err
    assert "no catalogue block in the templates of pregnancy-lactation" in err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["catalogue"].pop("fires_when"), "'fires_when' is a required property"),
        (lambda d: d["catalogue"].update(policy_keys=["Windows/taper"]), "does not match"),
        (lambda d: d["catalogue"]["indicators"][0].pop("key"), "catalogue/indicators/0"),
        (
            lambda d: d["catalogue"]["indicators"][0].update(variants=["nope"]),
            "catalogue indicator names unknown variants ['nope']",
        ),
    ],
)
def test_a_malformed_catalogue_block_stops_loading_with_a_clear_message(tmp_path, change, message):
    cards = _copy(tmp_path)
    _mutate(cards / "taper-required.json", change)
    with pytest.raises(TemplateError) as exc:
        load_templates(cards)
    assert "taper-required.json" in str(exc.value)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda d: d["catalogue"]["policy_keys"].append("windows.no_such_key"), "no_such_key"),
        (lambda d: d["catalogue"]["indicators"][0].update(key="taper.level"), "taper.level"),
    ],
)
def test_a_policy_key_the_policy_lacks_is_named(tmp_path, change, key):
    cards = _copy(tmp_path)
    _mutate(cards / "taper-required.json", change)
    with pytest.raises(CatalogueError, match=rf"taper-required\.json: .*{key}.*not in the policy"):
        generate(cards_dir=cards)


def test_basis_lookup_own_prefix_section_and_orphans():
    data = {
        "a": {
            "basis": "[D] section",
            "x": 1,
            "x_basis": "[E] own",
            "geri_max": 2,
            "geri_basis": "[E] prefix",
            "y": 3,
            "escalation_basis": "[D] orphan",
        },
        "b": {"z": 4},
    }
    assert basis_of(data, ["a", "x"]) == ("a.x_basis", "[E] own")
    assert basis_of(data, ["a", "geri_max"])[1] == "[E] prefix (from `a.geri_basis`)"
    assert basis_of(data, ["a", "y"])[1] == "[D] section (from `a.basis`)"
    assert basis_of(data, ["b", "z"]) == (None, NOT_STATED)
    rows = {r.key: (r.value, r.basis) for r in policy_rows(data, ["a"])}
    assert rows["a.escalation"] == ("—", "[D] orphan")
    assert "a.x_basis" not in rows and "a.basis" not in rows
