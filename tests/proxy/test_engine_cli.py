"""`strangler proxy`'s operator-facing edges: clean errors, the admin token file."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

from proxy.cli import admin_token
from tests.proxy.harness import ROOT


def test_missing_rules_is_one_clean_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "strangler", "proxy", "--rules",
                           str(tmp_path / "nope.yaml"), "--no-shadow"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STRANGLER_ADMIN_TOKEN": "t"})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"strangler: error: rules not found: {tmp_path / 'nope.yaml'}; pass --rules FILE|DIR"]


def test_a_shadow_store_url_it_cannot_use_is_one_line_before_anything_starts(tmp_path):
    for url, says in (("not a url", "is not a database URL"),
                      ("mysql://u@h/db", "mysql is not supported; use SQLite or PostgreSQL")):
        proc = subprocess.run([sys.executable, "-m", "strangler", "proxy", "--rules",
                               str(ROOT / "routing_rules" / "demo.yaml"), "--shadow-store", url],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith(f"strangler: error: store URL {url!r}") and says in line
        assert list(tmp_path.iterdir()) == []          # no admin token file written either


def test_admin_token_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STRANGLER_ADMIN_TOKEN", raising=False)
    generated = admin_token(None)
    path = tmp_path / "var" / "admin.token"
    assert path.read_text().strip() == generated and len(generated) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", "from-env")
    assert admin_token(None) == "from-env"
    given = tmp_path / "token"
    given.write_text("from-file\n")
    assert admin_token(given) == "from-file"
