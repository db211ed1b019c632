"""Read rule files into plain data while remembering the line every value came from.

PyYAML's composer gives nodes with `start_mark`; we turn them into dicts/lists/scalars (with
YAML 1.1 scalar resolution, as `yaml.safe_load` does) and record `path -> line` so each later
check can cite `file:line`. A PATH is one YAML file or a directory whose `*.yaml`/`*.yml` files
are read in sorted name order (capabilities keep that order: first match wins across files).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from proxy.rules.problems import Problem, RulesUnreadable

PathKey = tuple[str | int, ...]
# More values than any real rule table has: stops alias bombs ("billion laughs") early.
MAX_VALUES = 500_000
# libyaml's parser when PyYAML was built with it (10x faster on big rule files), same results.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(slots=True)
class RuleSource:
    """One rule file: its bytes, its data (None when the YAML is broken) and line numbers."""
    file: str
    raw: bytes
    data: Any = None
    lines: dict[PathKey, int] = field(default_factory=dict)

    def line(self, path: PathKey) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def rule_files(path: str | Path) -> list[Path]:
    """The files a PATH stands for, in load order."""
    p = Path(path)
    if p.is_dir():
        try:
            files = sorted(f for f in p.iterdir()
                           if f.suffix in (".yaml", ".yml") and f.is_file())
        except OSError as exc:
            raise RulesUnreadable([Problem(str(p), None, None,
                                           f"cannot list: {exc.strerror or exc}")]) from exc
        if not files:
            raise RulesUnreadable([Problem(str(p), None, None,
                                           "no *.yaml rule files in this directory")])
        return files
    if not p.exists():
        raise RulesUnreadable([Problem(str(p), None, None,
                                       "no such file or directory; pass a rule file or a directory of them")])
    return [p]


def read_sources(path: str | Path, texts: Mapping[str, bytes] | None = None
                 ) -> tuple[list[RuleSource], list[Problem]]:
    """Read and parse every rule file under PATH; YAML syntax errors come back as problems.

    `texts` (file name as `rule_files` spells it -> bytes) stands in for files on disk, so an
    edit can be checked as the rule set it would become before anything is written."""
    sources: list[RuleSource] = []
    problems: list[Problem] = []
    for f in rule_files(path):
        try:
            raw = texts[str(f)] if texts and str(f) in texts else f.read_bytes()
        except OSError as exc:
            raise RulesUnreadable([Problem(str(f), None, None,
                                           f"cannot read: {exc.strerror or exc}")]) from exc
        src = RuleSource(str(f), raw)
        problems.extend(_parse(src))
        sources.append(src)
    return sources, problems


def content_version(sources: list[RuleSource]) -> str:
    """sha256 over the files' bytes in load order, first 12 hex digits."""
    return version_of(src.raw for src in sources)


def version_of(contents: Iterable[bytes]) -> str:
    """The table version of these file contents, in load order (the CLI checks edits by it)."""
    digest = hashlib.sha256()
    for raw in contents:
        digest.update(raw)
    return digest.hexdigest()[:12]


def _parse(src: RuleSource) -> list[Problem]:
    try:
        text = src.raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(src.file, None, None, f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        return [_syntax_problem(src.file, text, exc)]
    except yaml.YAMLError as exc:
        return [Problem(src.file, None, None, f"YAML syntax: {exc}")]
    if node is None:
        return [Problem(src.file, 1, None, "the file is empty; expected `version: 1` and rules")]
    problems: list[Problem] = []
    try:
        src.data = _to_data(node, (), src, problems, yaml.SafeLoader(""))
    except _TooLarge:
        src.data = None
        return [Problem(src.file, None, None, f"more than {MAX_VALUES:,} values once aliases are "
                                                "expanded; is an alias (*name) repeated too often?")]
    return problems


class _TooLarge(Exception):
    pass


def _syntax_problem(file: str, text: str, exc: yaml.MarkedYAMLError) -> Problem:
    """The line where YAML gave up, what it was parsing, and the usual culprit (tabs)."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else None
    what = exc.problem or "invalid YAML"
    if exc.context:
        started = exc.context_mark.line + 1 if exc.context_mark else None
        what += f" ({exc.context}" + (f" started on line {started}" if started != line else "") + ")"
    lines = text.splitlines()
    if line and line <= len(lines) and "\t" in lines[line - 1]:
        what += "; YAML indents with spaces, not tabs"
    return Problem(file, line, None, f"YAML syntax: {what}")


def _to_data(node: yaml.Node, path: PathKey, src: RuleSource,
             problems: list[Problem], loader: yaml.SafeLoader) -> Any:
    src.lines.setdefault(path, node.start_mark.line + 1)
    if len(src.lines) > MAX_VALUES:
        raise _TooLarge
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve YAML merge keys (<<: *anchor)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                problems.append(Problem(src.file, key_node.start_mark.line + 1, None,
                                        f"mapping keys must be plain names, not {key!r}"))
                continue
            if key in out:
                problems.append(Problem(src.file, key_node.start_mark.line + 1, None,
                                        f"duplicate key {key!r} (the first one is on line "
                                        f"{src.lines[path + (key,)]}); keep one"))
                continue
            src.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _to_data(value_node, path + (key,), src, problems, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(item, path + (i,), src, problems, loader)
                for i, item in enumerate(node.value)]
    return loader.construct_object(node)
