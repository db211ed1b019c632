"""Routing rules: load, check and compile routing_rules/*.yaml into a frozen rule table.

    table = load_table("routing_rules/demo.yaml")     # raises RulesError with .problems
    decision = table.decide("GET", "/api/products/7", "", {"x-user-id": "42"})

Pipeline: read (YAML with line numbers) -> JSON Schema (syntax) -> merge files -> meaning
checks -> compile matchers -> overlap checks -> frozen CompiledTable. Any error stops the load,
so a bad file never reaches traffic; warnings ride along on `table.warnings`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from proxy.rules.bucketing import Rng, bucket, default_rng
from proxy.rules.capability import CompiledCapability, Gates
from proxy.rules.compiler import compile_matchers, compile_table
from proxy.rules.merge import merge
from proxy.rules.overlap import check_overlaps
from proxy.rules.problems import ERROR, WARNING, Problem, RulesError, RulesUnreadable
from proxy.rules.schema_check import check_schema
from proxy.rules.semantics import check as check_meaning
from proxy.rules.source import content_version, read_sources
from proxy.rules.table import CompiledTable

__all__ = ["CompiledCapability", "CompiledTable", "Gates", "Problem", "RulesError",
           "RulesUnreadable", "Report", "bucket", "check_rules", "load_table"]


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of checking rules: every problem, and the table when there was no error."""
    files: tuple[str, ...]
    problems: tuple[Problem, ...]
    table: CompiledTable | None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]


def check_rules(path: str | Path, rng: Rng | None = None,
                environ: Mapping[str, str] | None = None,
                texts: Mapping[str, bytes] | None = None) -> Report:
    """Check rule files and compile them when they are sound. Raises RulesUnreadable only.

    `texts` replaces the content of some files (keyed as `rule_files` names them): the check of
    an edit before it is written."""
    sources, problems = read_sources(path, texts)
    files = tuple(s.file for s in sources)
    order = {f: i for i, f in enumerate(files)}

    def report(table: CompiledTable | None = None) -> Report:
        ranked = sorted(problems, key=lambda p: (order.get(p.file, 0), p.line or 0))
        return Report(files, tuple(ranked), table)

    for src in sources:
        if src.data is not None:
            problems += check_schema(src)
    if any(p.severity == ERROR for p in problems):
        return report()
    merged, merge_problems = merge(sources)
    problems += merge_problems + check_meaning(merged)
    if any(p.severity == ERROR for p in problems):
        return report()
    matchers = compile_matchers(merged)
    problems += check_overlaps(merged, matchers)
    if any(p.severity == ERROR for p in problems):
        return report()
    table = compile_table(merged, matchers, version=content_version(sources), files=files,
                          rng=rng or default_rng, environ=environ, problems=problems)
    return report(table)


def load_table(path: str | Path, rng: Rng | None = None,
               environ: Mapping[str, str] | None = None) -> CompiledTable:
    """Load, check and compile the rules at PATH (a file, or a directory of *.yaml read in
    sorted order). `rng` returns 0..9999 for requests without a sticky key; `environ` (default
    os.environ) supplies the override secret, read once here. Raises RulesError on any error."""
    result = check_rules(path, rng=rng, environ=environ)
    if result.table is None:
        raise RulesError(list(result.problems))
    return result.table
