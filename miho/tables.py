"""The one Markdown table formatter of the package (metric tables, ablations, the book's tables)."""

from __future__ import annotations

import numbers

__all__ = ["markdown_table"]


def markdown_table(headers: list[str], rows: list, floatfmt: str = ".2f", missing: str = "-") -> str:
    """A GitHub-flavoured Markdown table.

    Args:
        headers: the column titles.
        rows: sequences of cells, as many as ``headers`` each. Non-integral numbers (Python or
            numpy floats) are written with ``floatfmt``, None as ``missing``, anything else with
            ``str``.
        floatfmt: a format spec for floats, e.g. ``".2f"`` or ``".3e"``.
        missing: the text of a None cell.

    Returns:
        The table, one line per row after the header and separator lines, no trailing newline.
    """
    headers = [str(h) for h in headers]
    if not headers:
        raise ValueError("headers must name at least one column")
    try:
        format(0.5, floatfmt)
    except (TypeError, ValueError) as e:
        raise ValueError(f"floatfmt {floatfmt!r} is not a float format spec: {e}") from None

    def cell(x) -> str:
        if x is None:
            return missing
        if isinstance(x, numbers.Real) and not isinstance(x, numbers.Integral):
            return format(float(x), floatfmt)
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for i, row in enumerate(rows):
        row = list(row)
        if len(row) != len(headers):
            raise ValueError(f"rows[{i}] has {len(row)} cells but there are {len(headers)} headers")
        lines.append("| " + " | ".join(cell(x) for x in row) + " |")
    return "\n".join(lines)
