"""HTML of the dashboard and the gallery, one renderer for the web pages and the files.

Jinja2 (Flask's own template engine) with autoescaping: every string from the store or a
card is escaped; the only markup passed through is what this package made (pygal's SVG, whose
text ElementTree escapes, and card detail rendered by markdown-it with raw HTML disabled).
No page has a script. The style sheet is inline so the report file stands alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from cds_service import __version__
from cds_service.dashboard.charts import render_svg
from cds_service.dashboard.export import data_uri
from cds_service.dashboard.figures import Figure

ExportHref = Callable[[Figure, str], str]


@cache
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("cds_service.dashboard", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["number"] = _number
    return env


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "" if value is None else str(value)


def offline_export(figure: Figure, fmt: str) -> str:
    return data_uri(figure, fmt)


def render_dashboard(
    figures: list[Figure],
    *,
    window: str,
    export_href: ExportHref = offline_export,
    notes: list[str] | None = None,
    standalone: bool = False,
) -> str:
    sections: dict[str, list[dict[str, Any]]] = {}
    for figure in figures:
        sections.setdefault(figure.section, []).append(
            {
                "figure": figure,
                "svg": Markup(render_svg(figure.chart)),  # noqa: S704 - our own SVG, text escaped
                "csv": export_href(figure, "csv"),
                "json": export_href(figure, "json"),
            }
        )
    return (
        environment()
        .get_template("dashboard.html")
        .render(
            sections=sections,
            window=window,
            notes=notes or [],
            standalone=standalone,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            version=__version__,
        )
    )


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(version=__version__, **context)
