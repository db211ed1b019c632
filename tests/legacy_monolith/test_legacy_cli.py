"""`strangler legacy serve|migrate|seed` as an operator runs them: real processes, exit codes."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx

from tests.conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def environment(**extra: str) -> dict[str, str]:
    """The CLI's environment: only the DATABASE_URL given here, never one leaking in from ours."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return {**env, "PYTHONPATH": ROOT, **extra}


def strangler(*args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "strangler", *args], cwd=cwd,
                          env=environment(**env), capture_output=True, text=True, timeout=120)


def test_migrate_and_seed_default_to_var_legacy_db(tmp_path):
    result = strangler("legacy", "migrate", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "legacy.db").exists()
    result = strangler("legacy", "seed", "--products", "40", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "seeded 40 products" in result.stdout
    result = strangler("legacy", "seed", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == ("strangler: error: the database already holds 40 products; "
                                     "seed a fresh database (or drop this one) to get a "
                                     "deterministic data set")


def test_database_url_from_environment(tmp_path, pg_url):
    result = strangler("legacy", "seed", "--products", "10", cwd=tmp_path, DATABASE_URL=pg_url)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "var").exists()


def test_unreachable_database_is_one_clean_line(tmp_path):
    port = free_port()  # nothing listens there
    result = strangler("legacy", "migrate", "--database-url",
                       f"postgresql://postgres:x@127.0.0.1:{port}/nope", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("strangler: error: cannot reach the database")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_serve_answers_on_its_port_and_stops_cleanly(tmp_path):
    port = free_port()
    database = f"sqlite:///{tmp_path}/shop.db"
    process = subprocess.Popen(
        [sys.executable, "-m", "strangler", "legacy", "serve", "--port", str(port),
         "--database-url", database, "--seed", "30"],
        cwd=tmp_path, env=environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        body = None
        deadline = time.monotonic() + 60
        while body is None and time.monotonic() < deadline:
            try:
                body = httpx.get(f"http://127.0.0.1:{port}/api/products", timeout=2).json()
            except httpx.TransportError:
                assert process.poll() is None, process.stdout.read()
                time.sleep(0.1)
        assert body is not None and body["total"] == 30
    finally:
        process.send_signal(signal.SIGINT)
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            returncode = process.wait()
    assert returncode == 0  # Ctrl-C is a clean stop


def test_serve_on_a_busy_port_says_so_in_one_line(tmp_path):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        busy = strangler("legacy", "serve", "--port", str(port), "--database-url",
                         f"sqlite:///{tmp_path}/shop.db", cwd=tmp_path)
    assert busy.returncode == 2
    assert busy.stderr.splitlines()[-1] == (
        f"strangler: error: cannot listen on 127.0.0.1:{port} (Address already in use); "
        "stop whatever holds it or pass --port")
    assert "Traceback" not in busy.stderr
