"""Turn a data path into the words a problem uses: the rule (capability) name and a field path."""
from __future__ import annotations

from typing import Any

from proxy.rules.source import PathKey


def rule_of(data: Any, path: PathKey) -> str | None:
    """The capability a path lies in, by name (or `#N` when it has no usable name)."""
    if len(path) >= 2 and path[0] == "capabilities" and isinstance(path[1], int):
        caps = data.get("capabilities") if isinstance(data, dict) else None
        if isinstance(caps, list) and path[1] < len(caps):
            cap = caps[path[1]]
            name = cap.get("name") if isinstance(cap, dict) else None
            return name if isinstance(name, str) else f"#{path[1] + 1}"
    return None


def field_of(path: PathKey) -> str:
    """`match[0].path_regex` inside a capability, `backends.catalog.url` outside one."""
    if len(path) >= 2 and path[0] == "capabilities" and isinstance(path[1], int):
        path = path[2:]
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
