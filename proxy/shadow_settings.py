"""A capability's shadow settings as compiled from its rule file: immutable values.

The rules compiler builds these from the `shadow:` block; proxy.shadow interprets them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CompareSettings:
    """How two answers are compared."""
    ignore: tuple[str, ...] = ()             # JSONPath-like: $.a.b, $..updated_at, $.items[*].x
    headers: tuple[str, ...] = ("content-type",)  # lower-case response headers compared
    numeric_tolerance: float = 0.0           # absolute difference allowed between numbers
    unordered_arrays: tuple[str, ...] = ()   # paths whose arrays compare as multisets
    text_patterns: tuple[str, ...] = ()      # regexes blanked in text/HTML before comparing


@dataclass(frozen=True, slots=True)
class ShadowSettings:
    """Per capability: how much to shadow and how to compare."""
    percent: float = 0.0           # share of requests shadowed, 0..100
    sticky: bool = True            # by the rollout's sticky key (else random per request)
    unsafe: bool = False           # opt in to shadow POST/PUT/PATCH/DELETE (target must honour dry-run)
    max_body_bytes: int = 1 << 20  # larger bodies are not shadowed (counted as skipped)
    noise_percent: float = 10.0    # of shadowed requests, also ask legacy a second time
    timeout_s: float = 2.0         # shadow request timeout
    sensitive_fields: tuple[str, ...] = ("password", "card_number", "cvv", "token", "secret")
    compare: CompareSettings = CompareSettings()
