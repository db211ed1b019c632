"""Overlap checks (placeholder until the full analysis lands)."""
from __future__ import annotations

from proxy.rules.matchers import Matcher
from proxy.rules.merge import Merged
from proxy.rules.problems import Problem


def check_overlaps(merged: Merged, matchers: list[Matcher]) -> list[Problem]:
    return []
