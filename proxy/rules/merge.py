"""Several schema-valid rule files become one document, each part remembering its source.

Backends are pooled (names must be unique across files); capabilities keep file order, files in
sorted name order; `default`, `override` and `trusted_proxies` may be set in one file only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxy.rules.problems import Problem
from proxy.rules.source import PathKey, RuleSource

SINGLE_KEYS = ("default", "override", "trusted_proxies")


@dataclass(frozen=True, slots=True)
class Located:
    """A piece of rule data and where it came from."""
    src: RuleSource
    path: PathKey
    data: Any

    def line(self, *sub: str | int) -> int | None:
        return self.src.line(self.path + sub)

    def problem(self, message: str, *sub: str | int, rule: str | None = None,
                severity: str = "error") -> Problem:
        return Problem(self.src.file, self.line(*sub), rule, message, severity)


@dataclass(slots=True)
class Merged:
    files: list[str] = field(default_factory=list)
    backends: dict[str, Located] = field(default_factory=dict)
    capabilities: list[Located] = field(default_factory=list)
    single: dict[str, Located] = field(default_factory=dict)


def merge(sources: list[RuleSource]) -> tuple[Merged, list[Problem]]:
    merged, problems = Merged(), []
    for src in sources:
        merged.files.append(src.file)
        data = src.data
        for name, spec in (data.get("backends") or {}).items():
            here = Located(src, ("backends", name), spec)
            if name in merged.backends:
                first = merged.backends[name]
                problems.append(here.problem(
                    f"backend {name!r} is defined twice (first at {first.src.file}:{first.line()}); "
                    "rename or remove one"))
                continue
            merged.backends[name] = here
        for i, cap in enumerate(data.get("capabilities") or []):
            merged.capabilities.append(Located(src, ("capabilities", i), cap))
        for key in SINGLE_KEYS:
            if key not in data:
                continue
            here = Located(src, (key,), data[key])
            if key in merged.single:
                first = merged.single[key]
                problems.append(here.problem(
                    f"{key!r} is set in more than one file (also {first.src.file}:{first.line()}); "
                    "set it in one file only"))
                continue
            merged.single[key] = here
    return merged, problems
