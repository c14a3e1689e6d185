"""``diazepam-cds rules``: the rule catalogue (``docs/clinical-rules.md``) from the policy and
card templates. The generator is :mod:`cds_service.clinical.catalogue`; this is its CLI glue."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cds_service.cli import _EXTRA_PARSERS, command


def _add_rules(sub: Any) -> None:
    p = sub.add_parser(
        "rules",
        help="print the rule catalogue (topics, when they fire, levels, thresholds, sources)",
        description="Print the rule catalogue generated from the clinical policy and the card "
        "templates. The committed docs/clinical-rules.md is `rules --markdown --output "
        "docs/clinical-rules.md` with the shipped policy and cards.",
    )
    p.add_argument("--markdown", action="store_true", help="the full Markdown catalogue")
    p.add_argument(
        "--policy",
        metavar="FILE",
        default=None,
        help="a deployment's policy override, deep-merged over the shipped policy as "
        "CDS_POLICY_FILE is (the environment variable itself is not read)",
    )
    p.add_argument(
        "--cards",
        metavar="DIR",
        default=None,
        help="card template directory (default: the shipped cards/; CDS_CARDS_DIR is not read)",
    )
    p.add_argument("--output", metavar="FILE", default=None, help="write here instead of stdout")
    p.add_argument(
        "--gallery",
        metavar="FILE",
        default=None,
        help="write the card gallery (every fixture scenario's cards, standard and epic "
        "profiles, and the before/after of the redesign) as one self-contained HTML file",
    )
    p.add_argument(
        "--fixtures",
        metavar="DIR",
        default=None,
        help="scenario directory for --gallery (default: the shipped fixtures/scenarios)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a template has no catalogue block (it is still rendered, marked)",
    )


_EXTRA_PARSERS.append(_add_rules)


@command("rules")
def rules(args: argparse.Namespace) -> int:
    from cds_service.clinical.catalogue import (
        load_inputs,
        render_markdown,
        render_text,
        undescribed,
    )

    if args.gallery:
        return _gallery(args)
    policy, templates = load_inputs(args.policy, args.cards)
    if args.markdown:
        text = render_markdown(
            policy,
            templates,
            Path(args.policy).name if args.policy else None,
            Path(args.cards).name if args.cards else None,
        )
    else:
        text = render_text(policy, templates)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8", newline="\n")
    else:
        sys.stdout.write(text)
    missing = undescribed(templates)
    if missing:
        print(
            f"diazepam-cds rules: no catalogue block in the templates of {', '.join(missing)}",
            file=sys.stderr,
        )
        if args.strict:
            return 1
    return 0


def _gallery(args: argparse.Namespace) -> int:
    """The gallery file from the policy and cards given (as the catalogue: not the
    environment's), answered by the engine with authentication and FHIR fetches off."""
    from cds_service.clinical.engine import Engine
    from cds_service.config import load_settings
    from cds_service.dashboard.gallery import (
        FIXTURES_DIR,
        before_after,
        render_gallery,
        run_scenarios,
    )

    overrides: dict[str, Any] = {"auth": "disabled"}
    if args.policy:
        overrides["policy_file"] = args.policy
    if args.cards:
        overrides["cards_dir"] = args.cards
    settings = load_settings(environ={}, overrides=overrides)
    engine = Engine.from_settings(settings)
    directory = Path(args.fixtures) if args.fixtures else FIXTURES_DIR
    scenarios = run_scenarios(engine, settings, directory)
    if not scenarios:
        print(f"diazepam-cds rules: no scenarios in {directory}", file=sys.stderr)
        return 2
    html = render_gallery(scenarios, before_after(engine, settings, directory), standalone=True)
    Path(args.gallery).write_text(html, encoding="utf-8", newline="\n")
    failed = [s for s in scenarios if s.error]
    print(
        f"card gallery: {len({s.name for s in scenarios})} scenarios, "
        f"{sum(len(s.cards) for s in scenarios)} cards -> {args.gallery}"
        + (f"; {len(failed)} could not run" if failed else "")
    )
    return 1 if failed else 0
