"""Helpers for operator tests: a private copy of the demo rules, the CLI in-process, a snapshot of
everything an action may touch (rule bytes and history) to prove a refusal changed nothing."""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from strangler.cli import main

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "routing_rules" / "demo.yaml"


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of routing_rules/demo.yaml (catalog in stage shadow), the CLI's default rules."""
    path = tmp_path / "rules" / "demo.yaml"
    path.parent.mkdir()
    shutil.copy(DEMO, path)
    monkeypatch.setenv("STRANGLER_RULES", str(path))
    monkeypatch.setenv("STRANGLER_OPERATOR", "tester")
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """Run `strangler ARGS...` in-process; returns exit code, stdout, stderr."""
    def run(*args: str) -> Result:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)
    return run


@pytest.fixture
def snapshot():
    """Every file under the rules' directory (rule files, history log, content objects)."""
    def take(rules: Path) -> dict[str, bytes]:
        return {str(p.relative_to(rules.parent)): p.read_bytes()
                for p in sorted(rules.parent.rglob("*")) if p.is_file() and p.name != "lock"}
    return take
