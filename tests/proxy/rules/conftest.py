"""Helpers for rule tests: write a rule file to a temp dir and load or check it."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Callable

import pytest

BACKENDS = """\
version: 1
backends:
  legacy: {url: http://127.0.0.1:9001}
  svc: {url: http://127.0.0.1:9002, dry_run: true}
default: legacy
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Callable[[str], Path]:
    """Write YAML text (dedented) to a fresh rule file and return its path."""
    counter = iter(range(1000))

    def write(text: str, name: str | None = None) -> Path:
        path = tmp_path / (name or f"rules{next(counter)}.yaml")
        path.write_text(textwrap.dedent(text))
        return path
    return write
