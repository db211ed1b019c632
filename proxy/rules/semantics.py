"""Meaning checks after the schema: names resolve, regexes compile and cannot backtrack
exponentially (proxy.rules.regex_safety), templates are well-formed, percentages and steps make
sense, and stage and write owner agree.

Overlaps between matchers are checked separately (proxy.rules.overlap) on compiled matchers.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Protocol
from urllib.parse import urlsplit

from proxy.rules import units
from proxy.rules.merge import Located, Merged
from proxy.rules.paths import template_problem
from proxy.rules.problems import WARNING, Problem
from proxy.rules.regex_safety import ADVICE, explosive
# The module, not the name: proxy.shadow.paths itself imports proxy.rules (a cycle).
from proxy.shadow import paths as shadow_paths

# Which write owner each stage allows (canary may have either).
STAGE_WRITES = {"legacy": ("legacy",), "shadow": ("legacy",), "canary": ("legacy", "service"),
                "cutover": ("service",), "retired": ("service",)}


class Report(Protocol):
    """Records a problem for the capability being checked, at the line of the `at` path."""
    def __call__(self, message: str, *at: str | int, severity: str = ...) -> None: ...


def default_writes(stage: str) -> str | None:
    """The write owner a stage implies; None for canary, which must say."""
    allowed = STAGE_WRITES[stage]
    return allowed[0] if len(allowed) == 1 else None


def check(merged: Merged) -> list[Problem]:
    problems: list[Problem] = []
    for name, backend in merged.backends.items():
        problems += _check_backend(name, backend)
    problems += _check_top(merged)
    seen: dict[str, Located] = {}
    for cap in merged.capabilities:
        name = cap.data["name"]
        if name in seen:
            first = seen[name]
            problems.append(cap.problem(
                f"duplicate capability name (first at {first.src.file}:{first.line()}); "
                "names must be unique", "name", rule=name))
        seen.setdefault(name, cap)
        problems += _check_capability(cap, merged)
    return problems


def _check_backend(name: str, b: Located) -> list[Problem]:
    out: list[Problem] = []
    url = urlsplit(b.data["url"])
    try:
        port = url.port
    except ValueError:
        port = None
        out.append(b.problem(f"backends.{name}.url: the port is not a number 1..65535", "url"))
    if not url.hostname:
        out.append(b.problem(f"backends.{name}.url: no host; write http://HOST:PORT", "url"))
    if url.username or url.password:
        out.append(b.problem(f"backends.{name}.url: credentials do not belong in rule files; "
                             "remove user:password@", "url"))
    if url.path not in ("", "/") or url.query or url.fragment:
        out.append(b.problem(f"backends.{name}.url: only scheme://host:port is allowed (the proxy "
                             "forwards the request's own path); remove the path", "url"))
    if port == 0:
        out.append(b.problem(f"backends.{name}.url: port 0 is not a port", "url"))
    total = b.data.get("timeout")
    for key in ("connect_timeout", "read_timeout"):
        if total is not None and key in b.data and units.seconds(b.data[key]) > units.seconds(total):
            out.append(b.problem(f"backends.{name}.{key} is longer than timeout ({total}), so it "
                                 "never fires", key, severity=WARNING))
    return out


def _check_top(merged: Merged) -> list[Problem]:
    out: list[Problem] = []
    default = merged.single.get("default")
    if default is None:
        out.append(Problem(merged.files[0], 1, None, "no default backend: add `default: NAME` "
                           "(it answers every request no capability matches)"))
    elif default.data not in merged.backends:
        out.append(default.problem(_unresolved("default", default.data, merged)))
    override = merged.single.get("override")
    if override is not None:
        header = override.data.get("header", "X-Strangler-Route").lower()
        secret = override.data.get("secret_header", "X-Strangler-Route-Secret").lower()
        if header == secret:
            out.append(override.problem("override.header and override.secret_header must differ",
                                        "secret_header"))
    proxies = merged.single.get("trusted_proxies")
    for i, text in enumerate(proxies.data if proxies else []):
        try:
            ipaddress.ip_network(text, strict=False)
        except ValueError:
            out.append(proxies.problem(f"trusted_proxies[{i}]: {text!r} is not an IP address or "
                                       "CIDR network such as 10.0.0.0/8", i))
    return out


def _unresolved(field: str, name: str, merged: Merged) -> str:
    known = ", ".join(sorted(merged.backends)) or "none defined"
    return f"{field}: backend {name!r} is not defined under backends (known: {known})"


def _check_capability(cap: Located, merged: Merged) -> list[Problem]:
    d, rule = cap.data, cap.data["name"]
    out: list[Problem] = []

    def err(message: str, *sub: str | int, severity: str = "error") -> None:
        out.append(cap.problem(message, *sub, rule=rule, severity=severity))

    stage = d["stage"]
    for role in ("legacy", "service"):
        if role in d and d[role] not in merged.backends:
            err(_unresolved(role, d[role], merged), role)
    if "service" not in d and stage != "legacy":
        err(f"stage {stage} needs a service backend: add `service: NAME`", "stage")
    if "service" in d and d.get("service") == d["legacy"]:
        err("legacy and service are the same backend, so nothing is migrated", "service",
            severity=WARNING)
    writes = d.get("writes")
    if writes is None and default_writes(stage) is None:
        err("stage canary needs an explicit write owner: add `writes: legacy` or `writes: service`",
            "stage")
    elif writes is not None and writes not in STAGE_WRITES[stage]:
        err(f"stage {stage} requires writes: {STAGE_WRITES[stage][0]} (writes have one owner; "
            f"move writes with the stage: legacy/shadow -> legacy, cutover/retired -> service)",
            "writes")
    for i, m in enumerate(d["match"]):
        _check_matcher(m, ("match", i), err)
    _check_rollout(d, stage, err)
    _check_shadow(d, stage, merged, err)
    for key in ("max_error_rate_delta", "min_shadow_match"):
        if key in d.get("gates", {}):
            _check_percent(d["gates"][key], f"gates.{key}", ("gates", key), err)
    return out


def _check_matcher(m: dict[str, Any], at: tuple[str | int, ...], err: Report) -> None:
    where = f"match[{at[1]}]"
    for key in ("path", "path_prefix", "path_template"):
        value = m.get(key)
        if value is not None and ("?" in value or "#" in value):
            err(f"{where}.{key}: {value!r} contains '?' or '#'; match query parameters with `query:`",
                *at, key)
    if "path" in m and "{" in m["path"]:
        err(f"{where}.path: {m['path']!r} looks like a template; use path_template to match "
            "variables", *at, "path", severity=WARNING)
    if "path_template" in m:
        why = template_problem(m["path_template"])
        if why:
            err(f"{where}.path_template: {why}", *at, "path_template")
    if "path_regex" in m:
        _check_regex(m["path_regex"], f"{where}.path_regex", (*at, "path_regex"), err)
    for section in ("headers", "query"):
        for name, value in (m.get(section) or {}).items():
            if isinstance(value, dict):
                _check_regex(value["regex"], f"{where}.{section}.{name}.regex",
                             (*at, section, name), err)


def _check_regex(pattern: str, where: str, at: tuple[str | int, ...], err: Report) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        err(f"{where}: the regex does not compile: {exc}", *at)
        return
    # An error, not a warning: one request that almost matches stalls a worker for seconds.
    if explosive(pattern):
        err(f"{where}: {pattern!r} {ADVICE}", *at)


def _check_percent(value: float | str, where: str, at: tuple[str | int, ...],
                   err: Report) -> float | None:
    p = units.percent(value)
    if not 0 <= p <= 100:
        err(f"{where}: {value!r} is outside 0..100", *at)
        return None
    if abs(p * 100 - round(p * 100)) > 1e-9:
        err(f"{where}: {value!r} is finer than the bucket scale (0.01 %); round it", *at)
        return None
    return p


def _check_rollout(d: dict[str, Any], stage: str, err: Report) -> None:
    rollout = d.get("rollout")
    if rollout is None:
        if stage == "canary":
            err("stage canary needs `rollout: {percent: P, sticky: [...]}`", "stage")
        return
    percent = None
    if "percent" in rollout:
        percent = _check_percent(rollout["percent"], "rollout.percent", ("rollout", "percent"), err)
    elif stage == "canary":
        err("stage canary needs rollout.percent", "rollout")
    steps = rollout.get("steps", [])
    previous = 0.0
    for i, step in enumerate(steps):
        p = _check_percent(step, f"rollout.steps[{i}]", ("rollout", "steps", i), err)
        if p is None:
            return
        if p <= previous:
            err(f"rollout.steps must increase strictly and start above 0 ({step!r} after "
                f"{previous:g})", "rollout", "steps", i)
            return
        previous = p
    # Past canary the service answers every read: a percent of 100, where promote leaves it
    # before cutover, says the same and is no news.
    implied = 100 if stage in ("cutover", "retired") else 0
    if stage != "canary" and percent and percent != implied:
        err(f"rollout.percent is ignored in stage {stage} (only canary splits reads)",
            "rollout", "percent", severity=WARNING)
    if stage == "canary" and not rollout.get("sticky"):
        err("no rollout.sticky sources: every request gets a random bucket, so clients flip "
            "between legacy and service; add e.g. [header:X-User-Id, cookie:session_id]",
            "rollout", severity=WARNING)


def _check_shadow(d: dict[str, Any], stage: str, merged: Merged, err: Report) -> None:
    shadow = d.get("shadow")
    if shadow is None:
        if stage == "shadow":
            err("stage shadow without a shadow block shadows nothing; add `shadow: {percent: 100}`",
                "stage", severity=WARNING)
        return
    percent = 0.0
    for key in ("percent", "noise_percent"):
        if key in shadow:
            p = _check_percent(shadow[key], f"shadow.{key}", ("shadow", key), err)
            percent = p if key == "percent" and p is not None else percent
    compare = shadow.get("compare") or {}
    for i, pattern in enumerate(compare.get("text_patterns", [])):
        _check_regex(pattern, f"shadow.compare.text_patterns[{i}]",
                     ("shadow", "compare", "text_patterns", i), err)
    for key in ("ignore", "unordered_arrays"):
        for i, path in enumerate(compare.get(key, [])):
            try:
                shadow_paths.compile_path(path)
            except ValueError as exc:
                err(f"shadow.compare.{key}[{i}]: {exc}", "shadow", "compare", key, i)
    if stage == "legacy" and percent:       # retired: a reverse shadow left by cutover, nothing to say
        err("shadow is ignored in stage legacy (shadowing starts in stage shadow)", "shadow",
            severity=WARNING)
    if stage == "shadow" and not percent:
        err("stage shadow with shadow.percent 0 shadows nothing", "shadow", severity=WARNING)
    if shadow.get("unsafe") and stage not in ("legacy", "retired"):
        targets = {"shadow": ["service"], "canary": ["service", "legacy"],
                   "cutover": ["legacy"]}[stage]
        for role in targets:
            backend = merged.backends.get(d.get(role, ""))
            if backend is not None and not backend.data.get("dry_run"):
                err(f"shadow.unsafe is set but backend {backend.path[1]!r} does not declare "
                    "dry_run: true, so unsafe shadows to it are skipped", "shadow", "unsafe",
                    severity=WARNING)
