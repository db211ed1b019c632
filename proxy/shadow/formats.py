"""What the CLI and the admin endpoint share: report formats and `--since` windows."""
from __future__ import annotations

import json
import re
from typing import Any

from proxy.shadow.render_html import render_html
from proxy.shadow.render_markdown import render_markdown
from proxy.shadow.render_text import render_text

FORMATS = ("text", "json", "markdown", "html")
CONTENT_TYPES = {"text": "text/plain", "json": "application/json",
                 "markdown": "text/markdown", "html": "text/html"}
_WINDOW = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_window(text: str) -> float:
    """`90s`, `15m`, `1h`, `7d` -> seconds; ValueError saying what is accepted."""
    m = _WINDOW.match(text)
    if not m:
        raise ValueError(f"window {text!r} is not a duration; write e.g. 90s, 15m, 1h or 7d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def render(report: dict[str, Any], fmt: str, bar: float | None = None) -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "markdown":
        return render_markdown(report)
    if fmt == "html":
        return render_html(report, bar)
    if fmt == "text":
        return render_text(report)
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
