"""A figure's table as CSV or JSON: what the export links beside every chart serve, and what
the self-contained report file carries inline (``data:`` links, so they work offline)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any
from urllib.parse import quote

from cds_service.dashboard.figures import Figure

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json"}


def _cell(value: Any) -> Any:
    return "" if value is None else value


def table_csv(figure: Figure) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(figure.table.columns)
    for row in figure.table.rows:
        # a cell a spreadsheet would run as a formula (=, +, -, @) is quoted as text
        writer.writerow(
            [
                f"'{v}" if isinstance(v, str) and v[:1] in ("=", "+", "-", "@") else _cell(v)
                for v in row
            ]
        )
    return out.getvalue()


def table_json(figure: Figure) -> str:
    rows = [dict(zip(figure.table.columns, row, strict=True)) for row in figure.table.rows]
    return json.dumps(
        {"figure": figure.id, "title": figure.title, "rows": rows}, indent=1, ensure_ascii=False
    )


def export(figure: Figure, fmt: str) -> str:
    return table_csv(figure) if fmt == "csv" else table_json(figure)


def data_uri(figure: Figure, fmt: str) -> str:
    """The export as a ``data:`` URI for the offline file."""
    return f"data:{FORMATS[fmt].replace(' ', '')},{quote(export(figure, fmt), safe='')}"
