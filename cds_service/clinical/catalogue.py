"""The rule catalogue (``docs/clinical-rules.md``), generated from the policy and card templates.

Nothing clinical is typed in here. Each card template may carry a ``catalogue`` block (its
knowledge-base row, when it fires, what it suggests, which policy keys set its indicator levels
and which policy keys are its thresholds); the generator renders those blocks, resolves the
policy keys in the (possibly site-overridden) policy with their ``*_basis`` strings, and adds the
template's variants, override reasons and sources. Topics come from whatever templates exist, in
sorted order; policy keys are sorted too, so the same inputs always give the same bytes.

A template without a ``catalogue`` block is rendered with a "not described" marker rather than
refused: the block is documentation, and a site's own card directory (``CDS_CARDS_DIR``) must
not stop the service or this command for lack of it. The shipped templates are held to it by
``tests/clinical/test_catalogue.py`` and by ``diazepam-cds rules --strict``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cds_service.clinical.cards import Template
from cds_service.clinical.policy import Policy
from cds_service.config import ConfigError

REGENERATE = "diazepam-cds rules --markdown --output docs/clinical-rules.md"
RULES_DIR = Path(__file__).resolve().parent / "rules"
NOT_STATED = "not stated"
NOT_DESCRIBED = "Not described"


class CatalogueError(ConfigError):
    """A catalogue block names something the policy or template does not have."""


@dataclass(frozen=True)
class Row:
    key: str
    value: str
    basis: str


# --- policy lookup ------------------------------------------------------------------------


def _split(key: str) -> list[str]:
    return key.split(".")


def lookup(data: Mapping[str, Any], key: str) -> Any:
    node: Any = data
    for part in _split(key):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def _nodes(data: Mapping[str, Any], path: list[str]) -> list[Mapping[str, Any]]:
    """The dicts along ``path``: root, then each container down to the leaf's parent."""
    nodes = [data]
    for part in path[:-1]:
        nodes.append(nodes[-1][part])
    return nodes


def _basis_in(node: Mapping[str, Any], names: Iterable[str]) -> tuple[str, str] | None:
    """``name_basis`` for a name, else the longest ``stem_basis`` whose stem prefixes a name
    (``geriatric_basis`` covers ``geriatric_max_mg_per_dose``), else the node's ``basis``."""
    names = list(names)
    for name in names:
        if isinstance(node.get(f"{name}_basis"), str):
            return f"{name}_basis", node[f"{name}_basis"]
    stems = sorted(
        (k[: -len("_basis")] for k in node if k.endswith("_basis")), key=len, reverse=True
    )
    for name in names:
        for stem in stems:
            if name.startswith(stem + "_") and isinstance(node[f"{stem}_basis"], str):
                return f"{stem}_basis", node[f"{stem}_basis"]
    if isinstance(node.get("basis"), str):
        return "basis", node["basis"]
    return None


def basis_of(data: Mapping[str, Any], path: list[str]) -> tuple[str | None, str]:
    """Where a value comes from: the nearest ``*_basis`` string, walking up from the leaf.
    Returns (dotted key of the basis, text); (None, 'not stated') when the policy says none.
    A basis the value shares (a prefix's or its section's) names the key it was taken from,
    so a reader can judge whether it covers the value."""
    nodes = _nodes(data, path)
    leaf = path[-1]
    own = ".".join(path) + "_basis"
    for depth in range(len(path) - 1, -1, -1):
        names = [path[depth]] if depth == len(path) - 1 else [path[depth], leaf]
        found = _basis_in(nodes[depth], names)
        if found is not None:
            where = ".".join([*path[:depth], found[0]])
            text = found[1] if where == own else f"{found[1]} (from `{where}`)"
            return where, text
    return None, NOT_STATED


def _is_basis(name: str) -> bool:
    return name == "basis" or name.endswith("_basis")


def _is_record(value: Any) -> bool:
    """A dict of plain values with no basis of its own (a regimen, a profile): one row."""
    return (
        isinstance(value, Mapping)
        and bool(value)
        and not any(isinstance(v, Mapping) or _is_basis(k) for k, v in value.items())
    )


def _leaves(value: Any, path: list[str], top: bool = True) -> list[tuple[list[str], Any]]:
    """Rows under a policy key: the key's own entries one by one, and below that each
    record (see ``_is_record``) as a single row."""
    if isinstance(value, Mapping) and value and (top or not _is_record(value)):
        out: list[tuple[list[str], Any]] = []
        for name in sorted(value):
            if not _is_basis(name):
                out += _leaves(value[name], [*path, name], top=False)
        return out
    return [(path, value)]


def _basis_keys(value: Any, path: list[str]) -> list[str]:
    if not isinstance(value, Mapping):
        return []
    out = []
    for name in sorted(value):
        if _is_basis(name) and isinstance(value[name], str):
            out.append(".".join([*path, name]))
        else:
            out += _basis_keys(value[name], [*path, name])
    return out


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def format_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    if _is_record(value):
        return "<br>".join(f"{name}: {format_value(value[name])}" for name in sorted(value))
    if isinstance(value, list) and all(
        v is None or isinstance(v, str | int | float | bool) for v in value
    ):
        return ", ".join(format_value(v) for v in value) if value else "(none)"
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(", ", ": "))


def policy_rows(
    data: Mapping[str, Any], keys: Iterable[str], skip: Iterable[str] = ()
) -> list[Row]:
    """One row per leaf under each key (sections are expanded), with its basis; a basis that
    explains no listed value (``opioid.escalation_basis``) gets a row of its own."""
    skipped = set(skip)
    rows: dict[str, Row] = {}
    used: set[str] = set()
    named_bases: set[str] = set()
    for key in keys:
        path = _split(key)
        value = lookup(data, key)
        for leaf_path, leaf in _leaves(value, path):
            dotted = ".".join(leaf_path)
            where, basis = basis_of(data, leaf_path)
            if where:
                used.add(where)
            if dotted not in skipped:
                rows[dotted] = Row(dotted, _cell(format_value(leaf)), _cell(basis))
        named_bases.update(_basis_keys(value, path))
    for where in sorted(named_bases - used):
        stem = where[: -len("_basis")] if where.endswith("_basis") else where
        rows.setdefault(stem, Row(stem, "—", _cell(lookup(data, where))))
    return [rows[k] for k in sorted(rows)]


# --- templates ----------------------------------------------------------------------------


def _rule_code(topic: str) -> list[tuple[str, str]]:
    """Rule modules that emit ``topic`` (a string constant in their code), with the first
    paragraph of their docstring, which names the knowledge-base row."""
    found = []
    for path in sorted(RULES_DIR.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(isinstance(node, ast.Constant) and node.value == topic for node in ast.walk(tree)):
            first = (ast.get_docstring(tree) or "").strip().split("\n\n")[0]
            rel = path.relative_to(RULES_DIR.parents[2]).as_posix()
            found.append((rel, " ".join(first.split())))
    return found


def undescribed(templates: Mapping[str, Template]) -> list[str]:
    return sorted(topic for topic, t in templates.items() if "catalogue" not in t.data)


@dataclass(frozen=True)
class Level:
    level: str
    when: str
    variants: tuple[str, ...]
    key: str | None
    basis: str


def levels(template: Template, policy: Policy) -> list[Level]:
    block = template.data["catalogue"]
    out = []
    for entry in block["indicators"]:
        variants = tuple(entry.get("variants") or sorted(template.data["variants"]))
        key = entry.get("key")
        if key is None:
            out.append(Level(entry["level"], entry["when"], variants, None, "rule code"))
            continue
        try:
            value = lookup(policy.data, key)
        except KeyError:
            raise CatalogueError(
                f"card template {template.topic}.json: catalogue indicator key {key!r} "
                "is not in the policy"
            ) from None
        _, basis = basis_of(policy.data, _split(key))
        out.append(Level(format_value(value), entry["when"], variants, key, basis))
    return out


def by_severity(found: Iterable[str], policy: Policy) -> list[str]:
    """Distinct levels, most severe first (the policy's ``indicator_order``), others last."""
    order = list(policy.data.get("indicator_order", []))
    return sorted(set(found), key=lambda x: (order.index(x) if x in order else len(order), x))


def distinct_levels(template: Template, policy: Policy) -> list[str]:
    """The levels a topic can show, most severe first."""
    return by_severity((lv.level for lv in levels(template, policy)), policy)


# --- rendering ----------------------------------------------------------------------------


def _table(head: list[str], rows: Iterable[Iterable[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _code(text: str) -> str:
    return f"`{text}`"


def _topic_section(template: Template, policy: Policy) -> list[str]:
    data = template.data
    topic = template.topic
    out = [f'<a id="{topic}"></a>', "", f"## {_code(topic)}: {data['topic']['display']}", ""]
    block = data.get("catalogue")
    code = _rule_code(topic)
    if block is None:
        out += [
            f"**{NOT_DESCRIBED}.** The template `{topic}.json` has no `catalogue` block, so "
            "when this card fires, what it suggests, its indicator levels and its thresholds "
            "are not documented here. Add the block (see the cards schema) and regenerate.",
            "",
        ]
    else:
        where = ", ".join(f"{_code(path)} ({doc})" if doc else _code(path) for path, doc in code)
        out += [
            f"**Knowledge-base row:** {block['rule']}"
            + (f" · **Rule code:** {where}" if where else ""),
            "",
        ]
        out += ["**When it fires.** " + " ".join(block["fires_when"].split()), ""]
        lvls = levels(template, policy)
        out += ["**Indicator.**", ""]
        out += _table(
            ["Level", "When", "Variants", "Policy key", "Basis"],
            (
                [
                    _code(lv.level),
                    _cell(lv.when),
                    ", ".join(lv.variants),
                    _code(lv.key) if lv.key else "(rule code)",
                    _cell(lv.basis),
                ]
                for lv in lvls
            ),
        )
        out += ["", "**What it suggests.** " + " ".join(block["suggests"].split()), ""]
    out += ["**Card variants** (summary text; `{…}` is filled in per patient).", ""]
    by_variant: dict[str, list[str]] = {}
    if block is not None:
        for lv in levels(template, policy):
            for name in lv.variants:
                by_variant.setdefault(name, []).append(lv.level)
    out += _table(
        ["Variant", "Level", "Summary"],
        (
            [
                _code(name),
                ", ".join(_code(x) for x in by_severity(by_variant.get(name, []), policy)) or "—",
                _cell(data["variants"][name]["summary"]),
            ]
            for name in sorted(data["variants"])
        ),
    )
    out.append("")
    if block is not None:
        keys = block["policy_keys"]
        indicator_keys = {lv.key for lv in levels(template, policy) if lv.key}
        try:
            rows = policy_rows(policy.data, sorted(set(keys)), skip=indicator_keys)
        except KeyError as exc:
            raise CatalogueError(
                f"card template {topic}.json: catalogue policy key {exc.args[0]!r} "
                "is not in the policy"
            ) from None
        out += ["**Thresholds** (policy settings this topic reads; indicator keys above).", ""]
        if rows:
            out += _table(
                ["Setting", "Value", "Basis"],
                ([_code(r.key), r.value, r.basis] for r in rows),
            )
        else:
            out.append("None.")
        out.append("")
    out += ["**Override reasons.**", ""]
    out += [
        f"- {_code(r['code'])}: {_cell(r['display'])}"
        + (" (only when the card offers a replacement)" if r.get("when") == "replaces" else "")
        for r in data["override_reasons"]
    ]
    out += ["", "**Sources.**", ""]
    out.append(f"- Card source: [{_cell(data['source']['label'])}]({data['source']['url']})")
    out += [f"- [{_cell(link['label'])}]({link['url']})" for link in template.links]
    for name in sorted(data["variants"]):
        variant = data["variants"][name]
        if variant.get("source"):
            src = variant["source"]
            out.append(f"- Variant {_code(name)} source: [{_cell(src['label'])}]({src['url']})")
        if name in template.variant_links:
            named = ", ".join(
                f"[{_cell(link['label'])}]({link['url']})" for link in template.variant_links[name]
            )
            out.append(f"- Variant {_code(name)} links (instead of the above): {named}")
    out.append("")
    return out


def _covered(key: str, named: set[str]) -> bool:
    parts = _split(key)
    return any(".".join(parts[:i]) in named for i in range(1, len(parts) + 1))


def render_markdown(
    policy: Policy,
    templates: Mapping[str, Template],
    policy_override: str | None = None,
    cards_override: str | None = None,
) -> str:
    """The catalogue. ``policy_override``/``cards_override`` name (without a directory, so the
    text does not depend on where it ran) a site's policy file and card directory."""
    version = policy.data.get("version", "unversioned")
    topics = sorted(templates)
    missing = undescribed(templates)
    policy_text = "the shipped policy (`cds_service/data/policy.json`)"
    cards_text = "the card templates (`cards/*.json`, `cards/links.json`)"
    command = REGENERATE
    stale = "; a test fails when this file is out of date"
    if policy_override or cards_override:
        command, stale = "diazepam-cds rules --markdown", ""
    if policy_override:
        policy_text += f" merged with the site override `{policy_override}`"
        command += f" --policy {policy_override}"
    if cards_override:
        cards_text = f"the card templates in `{cards_override}`"
        command += f" --cards {cards_override}"
    out = [
        f"<!-- GENERATED FILE: do not edit by hand. Regenerate with `{command}`. -->",
        "",
        "# Clinical rule catalogue",
        "",
        f"> **Generated** by `{command}` from {policy_text} and {cards_text}. **Do not edit by "
        "hand:** change the policy or a template's `catalogue` block and regenerate"
        f"{stale}.",
        "",
        f"Policy version: **{version}** · Topics: **{len(topics)}**"
        + (f" · Not described: {', '.join(_code(t) for t in missing)}" if missing else ""),
        "",
        "Basis: **[E]** evidence (label, guideline, Beers), **[D]** design judgment of this "
        f"service; *{NOT_STATED}* means the policy file gives no basis for the value.",
        "",
    ]
    summary = []
    for topic in topics:
        t = templates[topic]
        block = t.data.get("catalogue")
        if block is None:
            summary.append([f"[{_code(topic)}](#{topic})", "—", f"*{NOT_DESCRIBED}*"])
            continue
        lvls = distinct_levels(t, policy)
        summary.append([f"[{_code(topic)}](#{topic})", _cell(block["rule"]), ", ".join(lvls)])
    out += _table(["Topic", "Row", "Levels"], summary)
    out.append("")
    named: set[str] = {"version"}
    for topic in topics:
        out += _topic_section(templates[topic], policy)
        block = templates[topic].data.get("catalogue")
        if block is not None:
            named |= set(block["policy_keys"])
            named |= {e["key"] for e in block["indicators"] if "key" in e}
    top = sorted(k for k in policy.data if not _is_basis(k))
    general = [r for r in policy_rows(policy.data, top) if not _covered(r.key, named)]
    out += ["## Other policy settings", "", "Settings no topic above names.", ""]
    out += _table(
        ["Setting", "Value", "Basis"], ([_code(r.key), r.value, r.basis] for r in general)
    )
    out.append("")
    return "\n".join(out)


def render_text(policy: Policy, templates: Mapping[str, Template]) -> str:
    """One line per topic: code, knowledge-base row, levels (most severe first)."""
    rows = []
    for topic in sorted(templates):
        t = templates[topic]
        block = t.data.get("catalogue")
        if block is None:
            rows.append((topic, "-", NOT_DESCRIBED.lower()))
        else:
            rows.append((topic, block["rule"], "/".join(distinct_levels(t, policy))))
    width = [max((len(r[i]) for r in rows), default=0) for i in range(2)]
    lines = [f"policy {policy.data.get('version', 'unversioned')}"]
    lines += [f"{a:{width[0]}}  {b:{width[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines) + "\n"


def generate(policy_file: str | Path | None = None, cards_dir: str | Path | None = None) -> str:
    """The Markdown catalogue for the shipped (or a site's) policy and card templates."""
    policy, templates = load_inputs(policy_file, cards_dir)
    return render_markdown(
        policy,
        templates,
        Path(policy_file).name if policy_file else None,
        Path(cards_dir).name if cards_dir else None,
    )


def load_inputs(
    policy_file: str | Path | None = None, cards_dir: str | Path | None = None
) -> tuple[Policy, dict[str, Template]]:
    from cds_service.clinical.cards import load_templates
    from cds_service.clinical.policy import load_policy
    from cds_service.clinical.valuesets import load_valuesets
    from cds_service.config import _default_cards_dir

    policy = load_policy(policy_file or None, valuesets=load_valuesets())
    return policy, load_templates(cards_dir or _default_cards_dir())
