"""What a change to the rule files changes in routing: compare two compiled tables.

Compares meaning, not text: a reworded comment is no routing change; a percent, a stage, a
matcher, a backend URL is. Each difference is one `Difference` (`+` added, `-` removed, `~`
changed) with a one-line text form and a JSON form.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from proxy.rules import CompiledCapability, CompiledTable

# The capability fields an operator cares about, in the order they are reported.
FIELDS = ("stage", "writes", "percent", "steps", "shadow_percent", "sticky", "legacy", "service",
          "gates")


@dataclass(frozen=True, slots=True)
class Difference:
    kind: str                      # "+", "-" or "~"
    subject: str                   # "capability catalog", "backend legacy", "default", "order"
    field: str | None = None
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        if self.kind == "~":
            what = f"{self.subject}: {self.field}" if self.field else self.subject
            if self.old is None and self.new is None:
                return f"~ {what} changed"
            return f"~ {what}: {_show(self.old)} -> {_show(self.new)}"
        value = self.new if self.kind == "+" else self.old
        what = f"{self.subject}: {self.field}" if self.field else self.subject
        return f"{self.kind} {what}" + (f" ({_show(value)})" if value not in (None, "") else "")

    def as_dict(self) -> dict[str, Any]:
        return {"change": {"+": "added", "-": "removed", "~": "changed"}[self.kind],
                "subject": self.subject, "field": self.field, "old": self.old, "new": self.new}


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items() if v is not None) + "}"
    return str(value)


def _view(cap: CompiledCapability) -> dict[str, Any]:
    """The fields compared, each gate on its own (`gates.max_p99_ratio`)."""
    d = cap.as_dict()
    view = {k: d[k] for k in FIELDS if k != "gates"}
    view.update((f"gates.{k}", v) for k, v in d["gates"].items())
    return view


def _backend(b: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(b).items() if k not in ("name", "host", "port")}


def diff_tables(old: CompiledTable, new: CompiledTable) -> list[Difference]:
    out: list[Difference] = []
    old_caps = {c.name: c for c in old.capabilities}
    new_caps = {c.name: c for c in new.capabilities}
    for name, cap in new_caps.items():
        if name not in old_caps:
            out.append(Difference("+", f"capability {name}", None, None,
                                  f"stage {cap.stage}, {len(cap.matchers)} matcher(s)"))
    for name, cap in old_caps.items():
        if name not in new_caps:
            out.append(Difference("-", f"capability {name}", None,
                                  f"stage {cap.stage}, {len(cap.matchers)} matcher(s)"))
    kept_old = [n for n in old_caps if n in new_caps]
    kept_new = [n for n in new_caps if n in old_caps]
    if kept_old != kept_new:        # first match wins, so order is routing
        out.append(Difference("~", "order", "capabilities", kept_old, kept_new))
    for name in kept_new:
        out += _capability(name, old_caps[name], new_caps[name])
    for name in sorted({*old.backends, *new.backends}):
        a, b = old.backends.get(name), new.backends.get(name)
        if a is None:
            out.append(Difference("+", f"backend {name}", None, None, b.url))
        elif b is None:
            out.append(Difference("-", f"backend {name}", None, a.url))
        else:
            va, vb = _backend(a), _backend(b)
            out += [Difference("~", f"backend {name}", k, va[k], vb[k])
                    for k in va if va[k] != vb[k]]
    if old.default.name != new.default.name:
        out.append(Difference("~", "default", None, old.default.name, new.default.name))
    return out


def _capability(name: str, a: CompiledCapability, b: CompiledCapability) -> list[Difference]:
    subject = f"capability {name}"
    va, vb = _view(a), _view(b)
    out = [Difference("~", subject, k, va[k], vb[k]) for k in va if va[k] != vb[k]]
    if a.shadow != b.shadow and a.shadow.percent == b.shadow.percent:
        out.append(Difference("~", subject, "shadow settings", None, None))
    ma = [m.describe() for m in a.matchers]
    mb = [m.describe() for m in b.matchers]
    out += [Difference("-", subject, "matcher", m) for m in ma if m not in mb]
    out += [Difference("+", subject, "matcher", None, m) for m in mb if m not in ma]
    if [m for m in ma if m in mb] != [m for m in mb if m in ma]:
        out.append(Difference("~", subject, "matcher order", None, None))
    return out
