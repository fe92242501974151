"""Small tables for the book: rows rendered as Markdown (displayed with IPython's Markdown)."""

from __future__ import annotations


def markdown_table(headers: list[str], rows: list[tuple], floatfmt: str = ".2f") -> str:
    """A GitHub-flavoured Markdown table; floats formatted with ``floatfmt``."""
    fmt = lambda x: format(x, floatfmt) if isinstance(x, float) else str(x)  # noqa: E731
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines)
