"""The one-line help of a command, from its function's docstring: its first sentence.

A docstring's first *line* often stops mid-sentence ("...and meaning (names resolve,
regexes"), which is what `--help` listings showed; the first sentence of the first paragraph,
joined onto one line, reads whole.
"""
from __future__ import annotations


def help_line(func) -> str:
    doc = (func.__doc__ or "").strip()
    first = doc.split("\n\n")[0].replace("\n", " ")
    first = " ".join(first.split())
    sentence = first.split(". ")[0].rstrip(".")
    return sentence.replace("%", "%%")          # argparse formats help with %
