"""A compiled capability and its stage semantics: who answers, who shadows, who falls back.

| stage   | safe methods (GET/HEAD/OPTIONS/TRACE)           | shadow copy        | fallback |
| legacy  | legacy                                          | none               | -        |
| shadow  | legacy                                          | to service         | -        |
| canary  | service when the sticky bucket < percent*100    | to the other side  | legacy when service answers |
| cutover | service                                         | to legacy          | legacy   |
| retired | service                                         | none               | none     |
Unsafe methods always go to the write owner (reason "write-owner"); they are shadowed only when
`shadow.unsafe` is set and the target honours dry-run, else `shadow_skipped="unsafe-method"`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxy.decision import LEGACY, SAFE_METHODS, SERVICE, Backend, Decision, ShadowPlan
from proxy.rules.bucketing import BUCKETS, RequestKeys, Rng, StickySource, request_bucket, threshold
from proxy.rules.index import PathIndex
from proxy.rules.matchers import TEMPLATE, Matcher
from proxy.rules.paths import learned_route
from proxy.shadow_settings import ShadowSettings


@dataclass(frozen=True, slots=True)
class Gates:
    """Promotion gates (evaluated by the promotion logic, not here). Percentages are points."""
    max_error_rate_delta: float | None = None   # service error rate minus legacy's, in % points
    max_p99_ratio: float | None = None          # service p99 / legacy p99
    min_shadow_match: float | None = None       # % of shadowed requests that compared equal
    max_cdc_lag_s: float | None = None
    min_requests: int = 0                       # traffic needed before any gate is judged

    def as_dict(self) -> dict[str, Any]:
        return {"max_error_rate_delta": self.max_error_rate_delta,
                "max_p99_ratio": self.max_p99_ratio, "min_shadow_match": self.min_shadow_match,
                "max_cdc_lag_s": self.max_cdc_lag_s, "min_requests": self.min_requests}


@dataclass(frozen=True, slots=True)
class CompiledCapability:
    name: str
    file: str
    line: int | None
    stage: str
    writes: str                       # LEGACY or SERVICE: the one write owner
    legacy: Backend
    service: Backend | None           # None only in stage legacy
    percent: float                    # rollout percent as written (canary splits reads by it)
    steps: tuple[float, ...]
    sticky: tuple[StickySource, ...]
    shadow: ShadowSettings
    gates: Gates
    matchers: tuple[Matcher, ...]

    @property
    def service_percent(self) -> float:
        """Share of reads the service answers in this stage."""
        return {"canary": self.percent, "cutover": 100.0, "retired": 100.0}.get(self.stage, 0.0)

    @property
    def next_step(self) -> float | None:
        """The rollout step after the current percent, None at the last step."""
        return next((s for s in self.steps if s > self.percent), None)

    @property
    def shadow_percent(self) -> float:
        """Share of requests shadowed in this stage (0 where the stage shadows nothing)."""
        return 0.0 if self.stage in ("legacy", "retired") else self.shadow.percent

    def backend(self, side: str) -> Backend:
        return self.service if side == SERVICE and self.service is not None else self.legacy

    def as_dict(self) -> dict[str, Any]:
        """What /admin/status and the CLI show."""
        return {"name": self.name, "stage": self.stage, "writes": self.writes,
                "percent": self.percent, "service_percent": self.service_percent,
                "steps": list(self.steps), "next_step": self.next_step,
                "shadow_percent": self.shadow_percent,
                "sticky": [str(s) for s in self.sticky], "gates": self.gates.as_dict(),
                "legacy": self.legacy.name, "service": self.service.name if self.service else None,
                "match": [m.describe() for m in self.matchers],
                "file": self.file, "line": self.line}


class CapabilityRouter:
    """The per-request part of a capability, with its thresholds and shadow plans precomputed."""
    __slots__ = ("cap", "_rollout", "_shadow", "_shadow_group", "_plans", "_unsafe_plans",
                 "_rng", "_templates")

    def __init__(self, cap: CompiledCapability, rng: Rng) -> None:
        self.cap = cap
        self._rng = rng
        self._rollout = threshold(cap.percent)
        self._shadow = threshold(cap.shadow_percent)
        self._shadow_group = f"{cap.name}.shadow"
        templates = [m for m in cap.matchers if m.kind == TEMPLATE]
        self._templates = PathIndex(templates) if templates else None
        # Shadow plans by the side that answers: the copy goes to the other side.
        self._plans: dict[str, ShadowPlan] = {}
        self._unsafe_plans: dict[str, ShadowPlan] = {}
        for answering, target in ((LEGACY, SERVICE), (SERVICE, LEGACY)):
            if target == SERVICE and cap.service is None:
                continue
            backend = cap.backend(target)
            limit = cap.shadow.max_body_bytes
            self._plans[answering] = ShadowPlan(backend, target, limit, dry_run=False,
                                                compare=cap.shadow)
            if cap.shadow.unsafe and backend.honours_dry_run:
                self._unsafe_plans[answering] = ShadowPlan(backend, target, limit, dry_run=True,
                                                           compare=cap.shadow)

    def route(self, path: str) -> str:
        """The report route of a (normalised) path a prefix or regex matched: the first of this
        capability's templates that fits it, whatever that template's methods (a DELETE of
        /api/categories/kids reports as /api/categories/{slug}, not one route per slug), with
        one trailing slash ignored; else the learned route. A trie walk, no regex."""
        if self._templates is not None:
            bare = path[:-1] if len(path) > 1 and path.endswith("/") else path
            found = self._templates.candidates(bare)
            if found:
                return min(found, key=_order).value
        return learned_route(path)

    def pinnable(self, side: str) -> bool:
        """Can a tester pin a read to `side`? Not to legacy once retired, not to a missing service."""
        if side == LEGACY:
            return self.cap.stage != "retired"
        return self.cap.service is not None

    def decide(self, method: str, route: str, keys: RequestKeys, override: str | None) -> Decision:
        cap = self.cap
        if method not in SAFE_METHODS:
            side = cap.writes
            shadow, skipped = None, None
            if self._shadow_picked(keys):
                shadow = self._unsafe_plans.get(side)
                skipped = None if shadow else "unsafe-method"
            return Decision(cap.name, route, side, cap.backend(side), None, "write-owner",
                            shadow, skipped)
        if override is not None and self.pinnable(override):
            return Decision(cap.name, route, override, cap.backend(override), None, "override")
        stage = cap.stage
        if stage == "canary":
            side, reason = (SERVICE if self._in_rollout(keys) else LEGACY), "rollout"
        else:
            side, reason = (LEGACY if stage in ("legacy", "shadow") else SERVICE), "stage"
        fallback = cap.legacy if side == SERVICE and stage != "retired" else None
        shadow = self._plans.get(side) if self._shadow_picked(keys) else None
        return Decision(cap.name, route, side, cap.backend(side), fallback, reason, shadow)

    def _in_rollout(self, keys: RequestKeys) -> bool:
        if self._rollout <= 0:
            return False
        if self._rollout >= BUCKETS:
            return True
        return request_bucket(self.cap.name, self.cap.sticky, keys, self._rng) < self._rollout

    def _shadow_picked(self, keys: RequestKeys) -> bool:
        if self._shadow <= 0:
            return False
        if self._shadow >= BUCKETS:
            return True
        sources = self.cap.sticky if self.cap.shadow.sticky else ()
        return request_bucket(self._shadow_group, sources, keys, self._rng) < self._shadow


def _order(m: Matcher) -> int:
    return m.order
