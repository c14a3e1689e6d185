"""A ``Chart`` as an inline SVG, drawn by pygal (axes, scales, legends, error bars).

Why pygal: it writes SVG on the server in pure Python (no browser, no JavaScript, no fonts or
binaries to install), so a page passes a CSP with no script source at all, prints as it
shows, and the file ``diazepam-cds report --html`` writes is one self-contained document
that opens offline. It draws confidence intervals on bars natively. matplotlib would do the
same at ten times the import and install weight; a JavaScript library would need serving,
a script CSP and a browser to test the drawing at all.

pygal writes a ``<script>`` into every SVG (its config, and tooltips from a CDN unless
``js`` is emptied): both are removed here, so no chart ever carries a script or a network
reference. Tooltips become each point's SVG ``<desc>``/``<title>``, which pygal writes anyway.
"""

from __future__ import annotations

from typing import Any

import pygal
from pygal.etree import etree
from pygal.style import Style

from cds_service.dashboard.figures import Chart

SVG_NS = "{http://www.w3.org/2000/svg}"
# Colour-blind-safe (Okabe-Ito) and the same order everywhere: accepted, overridden, none.
COLOURS = ("#009E73", "#D55E00", "#999999", "#0072B2", "#E69F00", "#56B4E9", "#CC79A7")
STYLE = Style(
    background="white",
    plot_background="white",
    foreground="#222",
    foreground_strong="#111",
    foreground_subtle="#555",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    colors=COLOURS,
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
    title_font_size=15,
    value_font_size=11,
)
# bounded labels also keep pygal's title splitting from looping on a plot squeezed to nothing
LABEL_CHARS = 48
_KINDS = {
    "bar": pygal.Bar,
    "hbar": pygal.HorizontalBar,
    "stacked": pygal.StackedBar,
    "line": pygal.Line,
}


def _values(series: Any) -> list[Any]:
    if not series.intervals:
        return list(series.values)
    out: list[Any] = []
    for value, interval in zip(series.values, series.intervals, strict=True):
        if value is None or interval is None:
            out.append(None)
        else:
            out.append({"value": value, "ci": {"low": interval[0], "high": interval[1]}})
    return out


def render_svg(chart: Chart, *, title: str | None = None) -> str:
    """The chart as an ``<svg>`` element (text), sized by its container."""
    many = len(chart.labels) > 8
    kind = _KINDS[chart.kind]
    height = max(320, 34 * len(chart.labels) + 140) if chart.kind == "hbar" else 400
    graph = kind(
        style=STYLE,
        js=[],
        disable_xml_declaration=True,
        title=title,
        x_title=chart.x_title if chart.kind != "hbar" else chart.y_title,
        y_title=chart.y_title if chart.kind != "hbar" else None,
        width=820,
        height=height,
        explicit_size=False,
        legend_at_bottom=True,
        legend_at_bottom_columns=min(3, max(1, len(chart.series))),
        x_label_rotation=35 if many and chart.kind != "hbar" else 0,
        # long labels (override reasons) would squeeze the plot to nothing: the chart shows
        # their first words, the table beside it the whole text
        truncate_label=-1,
        truncate_legend=-1,
        show_minor_x_labels=True,
        print_values=False,
        range=(0, 100) if chart.percent else None,
        min_scale=4,
        max_scale=10,
        include_x_axis=True,
        allow_interruptions=True,
        no_data_text="No data in this window",
        value_formatter=(lambda v: f"{v:g} %") if chart.percent else _plain,
    )
    graph.x_labels = [_short(label) for label in chart.labels]
    for series in chart.series:
        graph.add(series.name, _values(series))
    tree = graph.render_tree()
    for parent in list(tree.iter()):
        for child in list(parent):
            if child.tag in (f"{SVG_NS}script", "script"):
                parent.remove(child)
    # pygal's own wrapper: lxml when installed, else the standard library's ElementTree
    return str(etree.tostring(tree, encoding="unicode"))


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1].rstrip() + "…"


def _plain(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
