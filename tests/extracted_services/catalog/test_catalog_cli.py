"""`strangler catalog migrate|seed|serve` as an operator runs them: exit codes and one-line errors."""
from __future__ import annotations

import socket
import subprocess
import sys

from strangler.db import sqlite_url


def strangler(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strangler", "catalog", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_migrate_then_seed_once(tmp_path):
    url = sqlite_url(tmp_path / "c.db")
    assert strangler("migrate", "--database-url", url, cwd=tmp_path).stdout == \
        "catalog schema is at head\n"
    first = strangler("seed", "--database-url", url, "--products", "12", cwd=tmp_path)
    again = strangler("seed", "--database-url", url, "--products", "12", cwd=tmp_path)
    assert (first.returncode, first.stdout) == (0, "seeded 12 products\n")
    assert (again.returncode, again.stdout) == (
        0, "the catalog already holds data; nothing seeded\n")


def test_operator_mistakes_are_one_clean_line(tmp_path):
    bad_seed = strangler("seed", "--database-url", sqlite_url(tmp_path / "c.db"),
                         "--products", "-1", cwd=tmp_path)
    assert (bad_seed.returncode, bad_seed.stderr) == (
        2, "strangler: error: --products must be >= 0, got -1\n")

    unreachable = strangler("migrate", "--database-url",
                            "postgresql://nobody:x@127.0.0.1:1/none", cwd=tmp_path)
    assert unreachable.returncode == 2
    assert unreachable.stderr.startswith("strangler: error: cannot reach the catalog database")
    assert len(unreachable.stderr.splitlines()) == 1

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        busy = strangler("serve", "--port", str(port), "--database-url",
                         sqlite_url(tmp_path / "c.db"), cwd=tmp_path)
    assert busy.returncode == 2
    assert busy.stderr.splitlines()[-1] == (
        f"strangler: error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "stop whatever holds it or pass --port")
