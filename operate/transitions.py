"""Which moves a capability may make, and what "rollback" means. Pure checks over a compiled
capability; each refusal says what to run instead.

Stages go forward one at a time: legacy -> shadow -> canary -> cutover -> retired. Going back is
allowed any distance as long as the write owner fits the target stage (legacy/shadow need
writes: legacy). The write owner changes only in canary (the one stage that allows either), by
its own command, so it never moves as a side effect:

- `writes CAP service` in canary; `cutover` needs it first.
- `writes CAP legacy` in canary, once CDC service -> legacy has caught up (`strangler cdc status`).

Rollback = "legacy answers every read again, now": stage canary at 0 % from canary, cutover or
retired; write ownership is left alone (moving writes back safely needs CDC to have caught up,
which is the operator's call), and the command says so. In legacy, shadow, or canary at 0 %
there is nothing to roll back. A rule over the current state, not a search of the history,
so it works on a hand-edited file and takes one write.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from proxy.rules import CompiledCapability
from proxy.rules.moves import STAGES
from proxy.rules.semantics import STAGE_WRITES
from strangler.errors import OperatorError



@dataclass(frozen=True, slots=True)
class RollbackPlan:
    stage: str
    percent: float
    note: str                       # what still needs the operator (writes), or ""


def check_stage(cap: CompiledCapability, target: str) -> None:
    """Refuse a stage move that skips a stage or leaves writes with an owner the stage forbids."""
    if target not in STAGES:
        close = difflib.get_close_matches(target, STAGES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise OperatorError(f"unknown stage {target!r}; {hint}stages are {', '.join(STAGES)}")
    here, there = STAGES.index(cap.stage), STAGES.index(target)
    name = cap.name
    if there > here + 1:
        verb = "retire" if target == "retired" else f"stage {target}"
        raise OperatorError(f"{name} is in stage {cap.stage}; {verb} needs stage "
                            f"{STAGES[there - 1]} first (stages move forward one at a time): run "
                            f"`strangler {_stage_command(name, STAGES[here + 1])}` next")
    if target == "cutover" and cap.writes != "service":
        raise OperatorError(f"{name} writes go to legacy; cutover needs writes: service first: "
                            f"run `strangler writes {name} service` (once CDC legacy -> service "
                            "has caught up)")
    if cap.writes not in STAGE_WRITES[target]:
        if cap.stage in ("cutover", "retired"):
            raise OperatorError(f"{name} writes go to service; to reach stage {target} move back "
                                f"in steps: `strangler stage {name} canary`, then `strangler writes "
                                f"{name} legacy` once CDC service -> legacy has caught up, then "
                                f"`strangler stage {name} {target}`")
        raise OperatorError(f"{name} writes go to service; stage {target} needs writes: legacy: run "
                            f"`strangler writes {name} legacy` first (once CDC service -> legacy "
                            "has caught up)")


def _stage_command(name: str, stage: str) -> str:
    return {"cutover": f"cutover {name}", "retired": f"retire {name}"}.get(
        stage, f"stage {name} {stage}")


def check_writes(cap: CompiledCapability, owner: str) -> None:
    if owner not in ("legacy", "service"):
        raise OperatorError(f"unknown write owner {owner!r}; use legacy or service")
    if owner == cap.writes:
        return
    if cap.stage != "canary":
        n = cap.name
        fix = (f"`strangler stage {n} shadow`, then `strangler stage {n} canary`"
               if cap.stage == "legacy" else f"`strangler stage {n} canary`")
        raise OperatorError(f"{n} is in stage {cap.stage}, where writes stay with {cap.writes}; "
                            f"the write owner changes only in canary: move there first with {fix}")


def check_percent(cap: CompiledCapability, percent: float) -> None:
    if not 0 <= percent <= 100:
        raise OperatorError(f"percent {percent:g} is outside 0..100; give e.g. "
                            f"`strangler rollout {cap.name} 25`")
    if cap.stage in ("cutover", "retired"):
        raise OperatorError(f"{cap.name} is in stage {cap.stage}, where the service answers every "
                            f"read and the percent is not used; to send reads back to legacy run "
                            f"`strangler rollback {cap.name}`")


def rollback_plan(cap: CompiledCapability) -> RollbackPlan | None:
    """The last safe state for CAP, or None when legacy already answers every read."""
    if cap.service_percent == 0:
        return None
    note = ""
    if cap.writes == "service":
        note = (f"writes stay with service; to move them back run `strangler writes {cap.name} "
                "legacy` once `strangler cdc status` shows service -> legacy caught up")
    return RollbackPlan("canary", 0.0, note)


def more_service_reads(before, after) -> list[str]:
    """Capabilities whose service share of reads a change raises (e.g. undoing a rollback):
    such a move is for `promote`/`rollout`, whose gates judge it."""
    now = {c.name: c for c in after.capabilities}
    return [f"{c.name} {c.service_percent:g} -> {now[c.name].service_percent:g} %"
            for c in before.capabilities
            if c.name in now and now[c.name].service_percent > c.service_percent]
