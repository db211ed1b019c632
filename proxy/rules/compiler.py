"""Turn checked rule data into frozen objects: backends, matchers, capabilities, the table."""
from __future__ import annotations

import ipaddress
import os
import re
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from proxy.decision import Backend, BreakerSpec
from proxy.rules import units
from proxy.rules.bucketing import Rng, StickySource
from proxy.rules.capability import CapabilityRouter, CompiledCapability, Gates
from proxy.rules.index import PathIndex
from proxy.rules.matchers import KINDS, REGEX, Matcher, ValueMatch
from proxy.rules.merge import Located, Merged
from proxy.rules.override import OverrideSpec
from proxy.rules.problems import WARNING, Problem
from proxy.rules.semantics import default_writes
from proxy.rules.table import CompiledTable
from proxy.shadow_settings import CompareSettings, ShadowSettings

DEFAULT_OVERRIDE = {"header": "X-Strangler-Route", "secret_header": "X-Strangler-Route-Secret",
                    "secret_env": "STRANGLER_OVERRIDE_SECRET"}


def compile_backend(name: str, d: dict) -> Backend:
    url = urlsplit(d["url"])
    kwargs: dict = {}
    if "connect_timeout" in d:
        kwargs["connect_timeout_s"] = units.seconds(d["connect_timeout"])
    if "read_timeout" in d:
        kwargs["read_timeout_s"] = units.seconds(d["read_timeout"])
    if "timeout" in d:
        kwargs["total_timeout_s"] = units.seconds(d["timeout"])
    if "max_connections" in d:
        kwargs["max_connections"] = d["max_connections"]
    if "breaker" in d:
        b, spec = d["breaker"], BreakerSpec()
        kwargs["breaker"] = BreakerSpec(
            failures=b.get("failures", spec.failures),
            window_s=units.seconds(b["window"]) if "window" in b else spec.window_s,
            cooldown_s=units.seconds(b["cooldown"]) if "cooldown" in b else spec.cooldown_s)
    return Backend(name=name, url=d["url"], host=url.hostname or "",
                   port=url.port or (443 if url.scheme == "https" else 80),
                   honours_dry_run=bool(d.get("dry_run", False)), **kwargs)


def compile_matchers(merged: Merged) -> list[Matcher]:
    matchers: list[Matcher] = []
    for cap in merged.capabilities:
        for i, m in enumerate(cap.data["match"]):
            kind = next(k for k in KINDS if k in m)
            methods = frozenset(m["methods"]) if "methods" in m else None
            matchers.append(Matcher(
                capability=cap.data["name"], index=i, order=len(matchers), kind=kind,
                value=m[kind], methods=methods,
                headers=_values(m.get("headers"), lower=True), query=_values(m.get("query")),
                regex=re.compile(m[kind]) if kind == REGEX else None))
    return matchers


def _values(spec: dict | None, lower: bool = False) -> tuple[ValueMatch, ...]:
    out = []
    for name, value in (spec or {}).items():
        name = name.lower() if lower else name
        out.append(ValueMatch(name, regex=re.compile(value["regex"])) if isinstance(value, dict)
                   else ValueMatch(name, exact=value))
    return tuple(out)


def _shadow(d: dict | None) -> ShadowSettings:
    d, base = d or {}, ShadowSettings()
    c, cbase = d.get("compare") or {}, CompareSettings()
    compare = CompareSettings(
        ignore=tuple(c.get("ignore", cbase.ignore)),
        headers=tuple(h.lower() for h in c.get("headers", cbase.headers)),
        numeric_tolerance=float(c.get("numeric_tolerance", cbase.numeric_tolerance)),
        unordered_arrays=tuple(c.get("unordered_arrays", cbase.unordered_arrays)),
        text_patterns=tuple(c.get("text_patterns", cbase.text_patterns)))
    return ShadowSettings(
        percent=units.percent(d.get("percent", base.percent)),
        sticky=d.get("sticky", base.sticky), unsafe=d.get("unsafe", base.unsafe),
        max_body_bytes=units.size(d.get("max_body", base.max_body_bytes)),
        noise_percent=units.percent(d.get("noise_percent", base.noise_percent)),
        timeout_s=units.seconds(d["timeout"]) if "timeout" in d else base.timeout_s,
        sensitive_fields=tuple(d.get("sensitive_fields", base.sensitive_fields)),
        compare=compare)


def _gates(d: dict | None) -> Gates:
    d = d or {}

    def optional(key: str, convert: Callable[[Any], float]) -> float | None:
        return convert(d[key]) if key in d else None

    return Gates(max_error_rate_delta=optional("max_error_rate_delta", units.percent),
                 max_p99_ratio=optional("max_p99_ratio", float),
                 min_shadow_match=optional("min_shadow_match", units.percent),
                 max_cdc_lag_s=optional("max_cdc_lag", units.seconds),
                 min_requests=int(d.get("min_requests", 0)))


def compile_capability(cap: Located, backends: Mapping[str, Backend],
                       matchers: tuple[Matcher, ...]) -> CompiledCapability:
    d = cap.data
    rollout = d.get("rollout") or {}
    return CompiledCapability(
        name=d["name"], file=cap.src.file, line=cap.line(), stage=d["stage"],
        writes=d.get("writes") or default_writes(d["stage"]),
        legacy=backends[d["legacy"]],
        service=backends[d["service"]] if "service" in d else None,
        percent=units.percent(rollout.get("percent", 0)),
        steps=tuple(units.percent(s) for s in rollout.get("steps", ())),
        sticky=tuple(StickySource.parse(s) for s in rollout.get("sticky", ())),
        shadow=_shadow(d.get("shadow")), gates=_gates(d.get("gates")), matchers=matchers)


def compile_table(merged: Merged, matchers: list[Matcher], *, version: str,
                  files: tuple[str, ...], rng: Rng, environ: Mapping[str, str] | None,
                  problems: list[Problem]) -> CompiledTable:
    """The table; a disabled override is added to `problems` as a warning."""
    backends = {name: compile_backend(name, b.data) for name, b in merged.backends.items()}
    by_cap: dict[str, list[Matcher]] = {}
    for m in matchers:
        by_cap.setdefault(m.capability, []).append(m)
    caps = tuple(compile_capability(c, backends, tuple(by_cap[c.data["name"]]))
                 for c in merged.capabilities)
    single = merged.single
    o = {**DEFAULT_OVERRIDE, **(single["override"].data if "override" in single else {})}
    env = os.environ if environ is None else environ
    override = OverrideSpec(o["header"], o["secret_header"], o["secret_env"],
                            env.get(o["secret_env"]) or None)
    if "override" in single and not override.enabled:
        problems.append(single["override"].problem(
            f"override: environment variable {override.secret_env} is not set, so the tester "
            "override is disabled (its headers are still stripped)", severity=WARNING))
    proxies = tuple(ipaddress.ip_network(p, strict=False)
                    for p in (single["trusted_proxies"].data if "trusted_proxies" in single else ()))
    return CompiledTable(
        version=version, files=files, backends=backends,
        default=backends[single["default"].data], capabilities=caps,
        routers={c.name: CapabilityRouter(c, rng) for c in caps}, index=PathIndex(matchers),
        override=override, trusted_proxies=proxies,
        warnings=tuple(p for p in problems if p.severity == WARNING))
