"""`strangler proxy`'s operator-facing edges: clean errors, the admin token file."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from proxy.cli import admin_token
from strangler.errors import OperatorError
from tests.proxy.harness import ROOT


def test_missing_rules_is_one_clean_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "strangler", "proxy", "--rules",
                           str(tmp_path / "nope.yaml"), "--no-shadow"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "STRANGLER_ADMIN_TOKEN": "t" * 16})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"strangler: error: rules not found: {tmp_path / 'nope.yaml'}; pass --rules FILE|DIR"]


def test_a_shadow_store_url_it_cannot_use_is_one_line_before_anything_starts(tmp_path):
    for url, says in (("not a url", "is not a database URL"),
                      ("mysql://u@h/db", "mysql is not supported; use SQLite or PostgreSQL"),
                      ("mysql://u:STOREPASS1@h/db", "'mysql://u:***@h/db': mysql is not")):
        proc = subprocess.run([sys.executable, "-m", "strangler", "proxy", "--rules",
                               str(ROOT / "routing_rules" / "demo.yaml"), "--shadow-store", url],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.returncode == 2, proc.stderr
        [line] = proc.stderr.strip().splitlines()
        assert line.startswith("strangler: error: store URL ") and says in line
        assert "STOREPASS1" not in proc.stderr
        assert list(tmp_path.iterdir()) == []          # no admin token file written either


def test_admin_token_sources(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STRANGLER_ADMIN_TOKEN", raising=False)
    generated = admin_token(None)
    path = tmp_path / "var" / "admin.token"
    assert path.read_text().strip() == generated and len(generated) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (tmp_path / "var" / "admin.tmp").write_text("planted")    # the old temp name: no effect
    (tmp_path / "var" / "admin.tmp").chmod(0o644)
    assert admin_token(None) != generated and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "var").iterdir()) == ["admin.tmp", "admin.token"]
    monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", "from-env-0123456789")
    assert admin_token(None) == "from-env-0123456789"
    given = tmp_path / "token"
    given.write_text("from-file-0123456789\n")
    given.chmod(0o600)
    assert admin_token(given) == "from-file-0123456789"
    assert capsys.readouterr().err == ""


def test_a_weak_or_exposed_admin_token_is_refused_or_warned_of(tmp_path, monkeypatch, capsys):
    weak = tmp_path / "weak"
    weak.write_text("weaktoken\n")
    weak.chmod(0o600)
    with pytest.raises(OperatorError, match=r"the admin token from --admin-token-file .*weak has 9 "
                                            r"characters; use at least 16"):
        admin_token(weak)
    monkeypatch.setenv("STRANGLER_ADMIN_TOKEN", "short")
    with pytest.raises(OperatorError, match="from STRANGLER_ADMIN_TOKEN has 5 characters"):
        admin_token(None)
    exposed = tmp_path / "exposed"
    exposed.write_text("a-long-enough-token-0123\n")
    exposed.chmod(0o644)
    assert admin_token(exposed) == "a-long-enough-token-0123"
    assert capsys.readouterr().err == (f"strangler proxy: warning: --admin-token-file {exposed} is "
                                       "readable by other users (mode 0644); chmod 600 it\n")
