"""`strangler promote CAP`: the next rollout step, only when the gates pass on enough traffic.

Figures come from every proxy given (summed: see operate.gates.combine), each counted since the
capability's last rollout change. A proxy still serving other rules than the file means its
figures describe another rollout: that is "wait" too. The move itself is operate.actions.rollout
with the rules version the verdict was computed on (compare-and-swap) and the gate figures as
the history's why. `--force --reason` moves without a verdict and is recorded as forced.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from operate import actions
from operate.actions import Actor, Change, find_capability
from operate.admin_client import AdminClient
from operate.gates import FAIL, PASS, WAIT, Check, Figures, GateVerdict, evaluate
from operate.rule_edit import compile_rules, read_rules
from operate.status import capability_view, cdc_lag_s, live_from
from proxy.rules.capability import CompiledCapability
from strangler.errors import OperatorError

EXIT = {PASS: 0, FAIL: 1, WAIT: 3}


@dataclass(frozen=True)
class Promotion:
    capability: str
    verdict: GateVerdict | None          # None: forced without live figures
    change: Change | None                # None: nothing moved
    forced: bool = False
    message: str = ""

    @property
    def exit_code(self) -> int:
        if self.change is not None or self.verdict is None:
            return 0
        return EXIT[self.verdict.state]


def promote(rules_path: str | Path, capability: str, client: AdminClient | None, who: str,
            force: bool = False, reason: str = "", dry_run: bool = False) -> Promotion:
    """Judge the gates and take the next step when they pass (`dry_run`: judge, show the step
    it would take, write nothing)."""
    if force and not reason.strip():
        raise OperatorError("--force needs --reason TEXT: a forced promotion is recorded with why")
    rules = read_rules(rules_path)
    cap = find_capability(compile_rules(rules), capability)
    if cap.stage != "canary":
        raise OperatorError(f"{capability} is in stage {cap.stage}; promote walks the rollout "
                            f"steps in canary (`strangler stage {capability} canary` first)")
    step = cap.next_step
    if step is None:
        return Promotion(capability, None, None, message=f"{capability} is at its last rollout "
                         f"step ({cap.percent:g} %); next: `strangler cutover {capability}`")
    if client is None and not force:
        raise OperatorError("no proxy to read live figures from; pass --proxy URL (repeatable) "
                            "or set STRANGLER_PROXIES, or override with --force --reason TEXT")
    verdict, unjudged = None, "no proxy given"
    if client is not None:
        try:
            verdict = _verdict(rules.version, cap, client)
        except OperatorError as exc:
            if not force:
                raise
            unjudged = str(exc)              # --force: an unreachable proxy does not block
    if not force and verdict is not None and verdict.state != PASS:
        return Promotion(capability, verdict, None, message=_at_zero(cap, verdict, step))
    figures = "; ".join(verdict.reasons) if verdict else f"no live figures ({unjudged})"
    why = (f"forced ({verdict.state if verdict else 'unjudged'}): {reason.strip()}; {figures}"
           if force else f"gates pass: {figures}")
    change = actions.rollout(rules_path, capability, step, Actor(who, why), dry_run=dry_run,
                             expected_version=rules.version)
    return Promotion(capability, verdict, change, forced=force)


def _at_zero(cap: CompiledCapability, verdict: GateVerdict, step: float) -> str:
    """At 0 % no read reaches the service unless pinned to it: waiting for traffic would wait
    for ever, so say what moves it on."""
    if cap.percent > 0 or verdict.state != WAIT or verdict.checks[0].gate != "traffic":
        return ""
    return (f"{cap.name} is at 0 %: only reads pinned to the service (the override header) reach "
            f"it, so its traffic will not come by itself; pin test reads to it, or take the first "
            f"step by hand: `strangler rollout {cap.name} {step:g}`")


def _verdict(version: str, cap, client: AdminClient) -> GateVerdict:
    live = live_from(client)
    stale = [p for p in live.proxies if p.version != version]
    if stale:
        return GateVerdict(WAIT, tuple(Check("rules", WAIT, f"proxy at {p.url} serves rules "
                                             f"{p.version}, not the file's {version}; waiting "
                                             "for it to reload") for p in stale))
    # Serving the new rules is not enough: its figures are the old step's until its gate watch
    # has judged them under the new version (within a second).
    unjudged = [p for p in live.proxies if p.gates.get("rules_version") not in (None, version)]
    if unjudged:
        return GateVerdict(WAIT, tuple(Check("rules", WAIT, f"proxy at {p.url} has not judged "
                                             f"rules {version} yet; waiting for its gate watch")
                                       for p in unjudged))
    lag = cdc_lag_s(cap) if cap.gates.max_cdc_lag_s is not None else None
    view = capability_view(cap, live, lag)
    figures = Figures.from_dict(view["figures"]) if view["figures"] else Figures()
    return evaluate(cap.gates, figures)
