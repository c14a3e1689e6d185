"""The dashboard end to end: aggregates from the store, figures, HTML. Called by the admin
page and by ``diazepam-cds report --html``, so both show the same figures."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cds_service.dashboard.figures import Figure, Labels, build_figures
from cds_service.dashboard.page import ExportHref, offline_export, render_dashboard
from cds_service.dashboard.query import Window, collect


def labels_for(templates: Mapping[str, Any]) -> Labels:
    """Topic and override-reason displays, as the published CodeSystems have them."""
    from cds_service.clinical.cards import override_reason_concepts

    topics = {code: t.data["topic"]["display"] for code, t in templates.items()}
    return Labels(topics=topics, reasons=override_reason_concepts(dict(templates)))


def figures(engine: sa.Engine, window: Window, labels: Labels) -> tuple[list[Figure], int]:
    data = collect(engine, window)
    return build_figures(data, labels), data.unknown_feedback


def dashboard_html(
    engine: sa.Engine,
    window: Window,
    labels: Labels,
    *,
    export_href: ExportHref = offline_export,
    standalone: bool = False,
) -> str:
    found, unknown = figures(engine, window, labels)
    notes = [
        "Rates count distinct cards; outcomes belong to the week the card was issued. "
        "The page holds codes and counts only: no patient, user or order appears in the store "
        "unhashed, and no hash is shown."
    ]
    if unknown:
        notes.append(
            f"{unknown} feedback item(s) received in this window named a card this service "
            "never issued to that client; they are not counted above."
        )
    return render_dashboard(
        found,
        window=window.describe(),
        export_href=export_href,
        notes=notes,
        standalone=standalone,
    )
