"""HTML as field keys: text and attribute values keyed by their element path.

Comparing a page as one string makes a single noisy spot (a "generated at" footer) turn the
whole body into noise, hiding real changes. Keyed by element path instead —
`html>body>main>h1`, `html>body>footer>p`, `html>body>main>table>tr>td>a@href` — each part of
the page is a field of its own, so noise cancellation works per element as it does for JSON.
Repeated siblings share a key (like `[*]` for arrays): their values are compared in order.
"""
from __future__ import annotations

from html.parser import HTMLParser

# Elements without an end tag never stay on the path.
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                   "source", "track", "wbr"})


class _Nodes(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.nodes: dict[str, list[str]] = {}

    def _add(self, key: str, value: str) -> None:
        self.nodes.setdefault(key, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        path = ">".join(self.stack + [tag])
        for name, value in attrs:
            self._add(f"{path}@{name}", value or "")
        if tag not in _VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in self.stack:  # tolerate unclosed children, as browsers do
            del self.stack[len(self.stack) - 1 - self.stack[::-1].index(tag):]

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text:
            self._add(">".join(self.stack) or "(top)", text)


def html_nodes(text: str) -> dict[str, list[str]]:
    """Element path (or `path@attribute`) -> its values in document order."""
    parser = _Nodes()
    parser.feed(text)
    parser.close()
    return parser.nodes
