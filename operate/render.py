"""Terminal output: tables that fit the terminal, colour only when writing to a terminal."""
from __future__ import annotations

import os
import shutil
import sys
from typing import TextIO

_CODES = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}
WIDTH = 80           # the least a terminal is assumed to have
PIPED_WIDTH = 160    # piped output is read in files and logs: cut far less


def output_width(stream: TextIO | None = None) -> int:
    """The terminal's width on a TTY (at least WIDTH), else PIPED_WIDTH."""
    stream = stream or sys.stdout
    if stream.isatty():
        return max(WIDTH, shutil.get_terminal_size((WIDTH, 24)).columns)
    return PIPED_WIDTH


def use_colour(stream: TextIO) -> bool:
    """A TTY, and the user did not opt out (NO_COLOR, TERM=dumb)."""
    return (stream.isatty() and "NO_COLOR" not in os.environ
            and os.environ.get("TERM") != "dumb")


def paint(text: str, colour: str, stream: TextIO | None = None) -> str:
    """TEXT in COLOUR when STREAM (default: stdout now) is a terminal."""
    return (f"\033[{_CODES[colour]}m{text}\033[0m" if use_colour(stream or sys.stdout)
            else text)


def diff_colour(line: str) -> str | None:
    """The colour of a diff line: additions green, removals red, hunk headers dim."""
    if line.startswith(("+++", "---", "@@")):
        return "dim"
    return {"+": "green", "-": "red", "~": "yellow"}.get(line[:1])


def table(headers: list[str], rows: list[list[str]], width: int | None = None,
          cut_first: tuple[int, ...] = ()) -> str:
    """Left-aligned columns two spaces apart; to fit, the `cut_first` columns (free text such as
    a reason) give way first, down to 12 characters, then the widest columns are cut (with …)."""
    cells = [headers] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    budget = (width or output_width()) - 2 * (len(headers) - 1)
    for i in cut_first:
        widths[i] = max(min(widths[i], 12), widths[i] - (sum(widths) - budget))
    while sum(widths) > budget:
        widest = max(range(len(widths)), key=lambda i: widths[i])
        if widths[widest] <= 6:
            break
        widths[widest] -= 1
    lines = []
    for row in cells:
        parts = [_fit(c, w) for c, w in zip(row, widths)]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _fit(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
