"""Moves between two rule tables that the stage and writes commands would refuse.

Shared by `rules apply`/`undo` (operate.actions refuses them without --force) and the proxy's
reload (which serves a hand-edited file, being the operator's word, but says so loudly).
"""
from __future__ import annotations

STAGES = ("legacy", "shadow", "canary", "cutover", "retired")


def unsafe_moves(before, after) -> list[str]:
    """What a whole-file change (`rules apply`, `undo`) does that the stage and writes commands
    would refuse: a write owner moved outside canary (the file validates, cutover -> legacy with
    writes -> legacy, yet legacy takes writes before CDC service -> legacy has caught up), a
    capability whose writes go to the service removed (they fall to the default backend), or a
    stage skipped forward. BEFORE and AFTER are compiled tables."""
    out = []
    now = {c.name: c for c in after.capabilities}
    for old in before.capabilities:
        new = now.get(old.name)
        if new is None:
            if old.writes == "service":
                out.append(f"{old.name} is removed while its writes go to the service: they "
                           "would go to the default backend; move them back first (`strangler "
                           f"writes {old.name} legacy` in canary, once CDC service -> legacy has "
                           "caught up)")
            continue
        if new.writes != old.writes and not (old.stage == new.stage == "canary"):
            out.append(f"{old.name}'s writes move {old.writes} -> {new.writes} with stage "
                       f"{old.stage} -> {new.stage}: the write owner moves only in canary, by "
                       f"`strangler writes {old.name} {new.writes}`")
        if STAGES.index(new.stage) > STAGES.index(old.stage) + 1:
            out.append(f"{old.name} skips from stage {old.stage} to {new.stage}: stages move "
                       "forward one at a time")
    return out

