"""Operator-friendly values in rule files: durations (`5s`, `250ms`), percentages (`0.5%`), sizes.

The schema has already checked their shape; these turn them into numbers.
"""
from __future__ import annotations

_DURATION = {"ms": 0.001, "s": 1.0, "m": 60.0}
_SIZE = {"B": 1, "KB": 1000, "KiB": 1024, "MB": 1000**2, "MiB": 1024**2}


def seconds(value: float | int | str) -> float:
    """`5s` -> 5.0, `250ms` -> 0.25, `2m` -> 120.0; a bare number is seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    for suffix in ("ms", "s", "m"):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * _DURATION[suffix]
    raise ValueError(f"not a duration: {value!r}")


def percent(value: float | int | str) -> float:
    """`0.5%` -> 0.5, `25` -> 25.0 (percentage points, not a fraction)."""
    if isinstance(value, str):
        return float(value.rstrip("%"))
    return float(value)


def size(value: int | str) -> int:
    """`64KiB` -> 65536; a bare integer is bytes."""
    if isinstance(value, int):
        return value
    for suffix in sorted(_SIZE, key=len, reverse=True):
        if value.endswith(suffix):
            return int(value[: -len(suffix)]) * _SIZE[suffix]
    raise ValueError(f"not a size: {value!r}")
