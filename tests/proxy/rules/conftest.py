"""Helpers for rule tests: write rule text to a fresh file in the test's temp dir."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import pytest


@pytest.fixture
def rules_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text to a new rule file (rules0.yaml, rules1.yaml, ...) and return its path."""
    counter = itertools.count()

    def write(text: str) -> Path:
        path = tmp_path / f"rules{next(counter)}.yaml"
        path.write_text(text)
        return path
    return write
