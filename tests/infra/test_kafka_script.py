"""scripts/kafka.sh keeps its contract: start is idempotent, status tells the truth, stop stops,
a restart keeps its topics (as a real broker restart does) and `start --fresh` has none left over. Runs a second broker on free ports in a temp dir
(the jar cache is shared), never touching the suite's own broker."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka.sh"


def kafka_sh(action: str, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), action, *flags], env=env, capture_output=True, text=True,
                          timeout=180)


def test_start_is_idempotent_a_restart_keeps_topics_and_fresh_starts_empty(tmp_path):
    port = free_port()
    env = {**os.environ, "STRANGLER_KAFKA_DATA": str(tmp_path / "kafka"),
           "STRANGLER_KAFKA_PORT": str(port), "STRANGLER_KAFKA_CONTROLLER_PORT": str(free_port())}
    pidfile = tmp_path / "kafka" / "kafka.pid"
    try:
        started = kafka_sh("start", env)
        assert started.returncode == 0, started.stderr
        pid = int(pidfile.read_text())

        again = kafka_sh("start", env)
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert int(pidfile.read_text()) == pid

        status = kafka_sh("status", env)
        assert status.returncode == 0
        assert f"running (pid {pid}) on 127.0.0.1:{port}" in status.stdout

        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        admin.create_topics([NewTopic("left-over", 1, 1)])["left-over"].result(30)

        assert kafka_sh("stop", env).returncode == 0
        assert not Path(f"/proc/{pid}").exists()
        assert kafka_sh("status", env).returncode == 3

        restarted = kafka_sh("start", env)
        assert restarted.returncode == 0, restarted.stderr
        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10).topics
        assert "left-over" in topics

        assert kafka_sh("stop", env).returncode == 0
        fresh = kafka_sh("start", env, "--fresh")
        assert fresh.returncode == 0, fresh.stderr
        topics = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"}).list_topics(timeout=10).topics
        assert "left-over" not in topics
    finally:
        kafka_sh("stop", env)
