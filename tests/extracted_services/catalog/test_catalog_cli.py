"""`strangler catalog migrate|seed|serve` as operators run them: exit codes, one-line errors."""
from __future__ import annotations

import socket
import subprocess
import sys

from strangler.cli import main
from strangler.db import sqlite_url


def test_migrate_then_seed_once(tmp_path, capsys):
    url = sqlite_url(tmp_path / "c.db")
    assert main(["catalog", "migrate", "--database-url", url]) == 0
    assert main(["catalog", "seed", "--database-url", url, "--products", "12"]) == 0
    assert main(["catalog", "seed", "--database-url", url, "--products", "12"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "catalog schema is at head", "seeded 12 products",
        "the catalog already holds data; nothing seeded"]


def test_operator_mistakes_are_one_clean_line(tmp_path, capsys):
    url = sqlite_url(tmp_path / "c.db")
    assert main(["catalog", "seed", "--database-url", url, "--products", "-1"]) == 2
    assert capsys.readouterr().err == "strangler: error: --products must be >= 0, got -1\n"

    assert main(["catalog", "migrate", "--database-url",
                 "postgresql://nobody:x@127.0.0.1:1/none"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("strangler: error: cannot reach the catalog database")
    assert len(err.splitlines()) == 1


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        busy = subprocess.run(
            [sys.executable, "-m", "strangler", "catalog", "serve", "--port", str(port),
             "--database-url", sqlite_url(tmp_path / "c.db")],
            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert busy.returncode == 2
    assert busy.stderr.splitlines()[-1] == (
        f"strangler: error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "stop whatever holds it or pass --port")
