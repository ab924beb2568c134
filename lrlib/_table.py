"""Plain-text and HTML rendering of the small result tables (comparisons, layer tables,
compression reports), shared so that they all look alike."""

from __future__ import annotations


def text_table(columns, rows, left_aligned=(0,)) -> str:
    """Columns padded to a common width; ``left_aligned`` columns are padded on the right,
    the others (numbers) on the left; a dashed line under the header."""
    cells = [list(columns)] + [list(row) for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(cell.ljust(width) if i in left_aligned else cell.rjust(width)
                       for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def html_table(columns, rows) -> str:
    """The same table as HTML, for notebooks."""
    head = "".join(f"<th>{column}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
