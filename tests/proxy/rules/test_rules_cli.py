"""`strangler rules validate`: problems with file, line and rule; exit 0 / 1 / 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from proxy.rules import bucket, load_table
from strangler.cli import main

ROOT = Path(__file__).resolve().parents[3]
GOOD = """\
version: 1
backends:
  legacy: {url: http://127.0.0.1:9001}
  svc: {url: http://127.0.0.1:9002}
default: legacy
capabilities:
  - name: catalog
    match: [{path_prefix: /api/products}]
    legacy: legacy
    service: svc
    stage: shadow
    shadow: {percent: 100}
"""


def test_valid_rules_exit_zero(rules_file, capsys) -> None:
    path = rules_file(GOOD)
    assert main(["rules", "validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ok: 1 file(s), 0 warning(s), version ")


def test_warnings_alone_still_exit_zero(rules_file, capsys) -> None:
    path = rules_file(GOOD.replace("    shadow: {percent: 100}\n", ""))
    assert main(["rules", "validate", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{path}:11: [rule catalog] warning: stage shadow without a shadow block")
    assert lines[-1].startswith("ok: 1 file(s), 1 warning(s)")


def test_errors_print_file_line_rule_and_exit_one(rules_file, capsys) -> None:
    path = rules_file(GOOD.replace("service: svc", "service: catalog")
                      .replace("[{path_prefix: /api/products}]", "[{path_regex: '(unclosed'}]"))
    assert main(["rules", "validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{path}:8: [rule catalog] error: match[0].path_regex: the regex does not compile")
    assert lines[1].startswith(f"{path}:10: [rule catalog] error: service: backend 'catalog' is not defined")
    assert lines[-1] == "2 error(s), 0 warning(s) in 1 file(s): rules rejected"


def test_json_output(rules_file, capsys) -> None:
    path = rules_file(GOOD.replace("stage: shadow", "stage: cutover\n    writes: legacy"))
    assert main(["rules", "validate", "--json", str(path)]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["ok"], doc["errors"], doc["warnings"], doc["version"]) == (False, 1, 0, None)
    assert doc["problems"] == [{"file": str(path), "line": 12, "rule": "catalog", "severity": "error",
                                "message": doc["problems"][0]["message"]}]
    assert "stage cutover requires writes: service" in doc["problems"][0]["message"]


def test_unreadable_path_exits_two(tmp_path, capsys) -> None:
    assert main(["rules", "validate", str(tmp_path / "missing.yaml")]) == 2
    out = capsys.readouterr().out
    assert "no such file or directory" in out and "cannot read rules at" in out


def test_the_installed_command_validates_the_demo_rules(rules_file) -> None:
    env = {**os.environ, "STRANGLER_OVERRIDE_SECRET": "s"}
    strangler = Path(sys.executable).with_name("strangler")
    ok = subprocess.run([str(strangler), "rules", "validate", "routing_rules/demo.yaml"], cwd=ROOT,
                        env=env, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("ok: 1 file(s), 0 warning(s), version ")
    bad = rules_file(GOOD.replace("stage: shadow", "stage: shadw"))
    failed = subprocess.run([str(strangler), "rules", "validate", str(bad)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert f"{bad}:11: [rule catalog] error: stage: 'shadw' is not one of" in failed.stdout


CANARY = GOOD.replace("stage: shadow", "stage: canary\n    writes: legacy\n"
                      "    rollout: {percent: 50, sticky: [header:X-User-Id]}") + (
    "override: {secret_env: TEST_EXPLAIN_SECRET}\n")


def explain(capsys, path, *argv: str) -> dict[str, str]:
    assert main(["rules", "explain", str(path), *argv]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_explain_shows_where_a_request_goes(rules_file, capsys, monkeypatch) -> None:
    path = rules_file(CANARY)
    monkeypatch.setenv("TEST_EXPLAIN_SECRET", "s3cret")
    user_in = next(u for u in map(str, range(100)) if bucket("catalog", u) < 5000)
    got = explain(capsys, path, "GET", "/api/products/7?x=1", "-H", f"X-User-Id: {user_in}")
    assert got["capability"] == "catalog" and got["route"] == "/api/products/{id}"
    assert got["side"] == "service -> svc (http://127.0.0.1:9002)"
    assert (got["reason"], got["fallback"]) == ("rollout", "legacy")
    assert got["shadow"] == "legacy -> legacy"  # reverse shadow: the side that did not answer
    pinned = explain(capsys, path, "GET", "/api/products/7", "-H", f"X-User-Id: {user_in}",
                     "-H", "X-Strangler-Route: legacy", "-H", "X-Strangler-Route-Secret: s3cret")
    assert (pinned["side"], pinned["reason"]) == ("legacy -> legacy (http://127.0.0.1:9001)", "override")
    write = explain(capsys, path, "POST", "/api/products")
    assert (write["side"], write["reason"]) == ("legacy -> legacy (http://127.0.0.1:9001)", "write-owner")
    other = explain(capsys, path, "GET", "/api/carts/12")
    assert other["capability"] == "(none: default backend)" and other["route"] == "/api/carts/{id}"


def test_explain_refuses_bad_rules_and_bad_input(rules_file, capsys) -> None:
    bad = rules_file(GOOD.replace("stage: shadow", "stage: shadw"))
    assert main(["rules", "explain", str(bad), "GET", "/"]) == 2
    assert "the rules do not load (1 error(s))" in capsys.readouterr().err
    good = rules_file(GOOD)
    assert main(["rules", "explain", str(good), "GET", "http://example.org/"]) == 2
    assert main(["rules", "explain", str(good), "GET", "/", "-H", "no-colon"]) == 2


def test_explain_json(rules_file, capsys) -> None:
    path = rules_file(CANARY)
    assert main(["rules", "explain", str(path), "POST", "/api/products", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert {k: got[k] for k in ("capability", "side", "backend", "reason", "fallback")} == {
        "capability": "catalog", "side": "legacy", "backend": "legacy", "reason": "write-owner",
        "fallback": None}
    assert got["rules"] == load_table(path, environ={}).version
