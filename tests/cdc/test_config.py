"""The CDC config takes the write owner from the routing rules when it names them (one source of
truth, the file `strangler writes` edits), and from its own `writes:` only without them."""
from __future__ import annotations

from pathlib import Path

import pytest

from cdc.config import load_config
from cdc.mapping import TO_LEGACY, TO_SERVICE
from strangler.errors import OperatorError

ROOT = Path(__file__).resolve().parents[2]
CATALOG = (ROOT / "routing_rules" / "cdc" / "catalog.yaml").read_text()
RULES = (ROOT / "routing_rules" / "demo.yaml").read_text()


def _config(tmp_path: Path, owner_line: str) -> Path:
    tables = CATALOG.split("\ntables:\n", 1)[1]
    path = tmp_path / "cdc" / "catalog.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"version: 1\ncapability: catalog\nlegacy:\n  url: sqlite:///{tmp_path}/l.db\n"
                    f"service:\n  url: sqlite:///{tmp_path}/s.db\n{owner_line}\ntables:\n{tables}")
    return path


def test_the_owner_comes_from_the_routing_rules_and_follows_them(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    path = _config(tmp_path, "rules: ../rules.yaml")
    config = load_config("catalog", str(path))
    assert (config.writes, config.directions("auto")) == ("legacy", [TO_SERVICE])

    rules.write_text(RULES.replace("stage: shadow", "stage: cutover").replace("writes: legacy ", "writes: service "))
    config = load_config("catalog", str(path))
    assert (config.writes, config.directions("auto")) == ("service", [TO_LEGACY])


def test_a_rules_path_from_the_environment_is_read_from_the_current_directory(tmp_path,
                                                                           monkeypatch):
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "rules.yaml").write_text(
        RULES.replace("stage: shadow", "stage: cutover").replace("writes: legacy ", "writes: service "))
    (tmp_path / "rules.yaml").write_text(RULES)          # what the file's own default names
    path = _config(tmp_path, "rules: ${STRANGLER_RULES:-../rules.yaml}")
    assert load_config("catalog", str(path)).writes == "legacy"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STRANGLER_RULES", "ops/rules.yaml")   # as an operator sets it
    assert load_config("catalog", str(path)).writes == "service"


def test_an_owner_the_caller_knows_wins_over_the_rules_the_file_names(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)           # writes: legacy
    path = _config(tmp_path, "rules: ../rules.yaml")
    config = load_config("catalog", str(path), writes="service")
    assert (config.writes, config.write_direction) == ("service", TO_LEGACY)


def test_without_rules_the_cdc_file_says_and_both_at_once_is_refused(tmp_path):
    assert load_config("catalog", str(_config(tmp_path, "writes: service"))).writes == "service"
    (tmp_path / "rules.yaml").write_text(RULES)
    with pytest.raises(OperatorError, match=r"catalog.yaml:\d+: writes: the routing rules .* remove writes:"):
        load_config("catalog", str(_config(tmp_path, "rules: ../rules.yaml\nwrites: legacy")))
    with pytest.raises(OperatorError, match="no capability 'catalog'"):
        (tmp_path / "rules.yaml").write_text(RULES.replace("name: catalog", "name: other"))
        load_config("catalog", str(_config(tmp_path, "rules: ../rules.yaml")))


def test_the_shipped_catalog_config_reads_the_demo_rules():
    assert load_config("catalog").writes == "legacy"


def test_apply_members_beyond_one_need_kafka(tmp_path):
    path = _config(tmp_path, "writes: legacy\napply:\n  members: 2")
    with pytest.raises(OperatorError, match="apply.members: 2: use 1, or more only with transport kind kafka"):
        load_config("catalog", str(path))
    path.write_text(path.read_text().replace("apply:", "transport: {kind: kafka}\napply:"))
    assert load_config("catalog", str(path)).apply_members == 2
