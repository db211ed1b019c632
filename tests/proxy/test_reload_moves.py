"""A hand-edited rule file that moves the write owner outside canary is served (the file is the
operator's word) but never quietly: the reload logs what the stage and writes commands refuse."""
from __future__ import annotations

import logging

from proxy.reload import RulesSource
from tests.proxy.harness import rules_doc, write_rules


async def test_a_write_owner_moved_by_hand_outside_canary_is_logged_loudly(tmp_path, caplog):
    path = write_rules(tmp_path / "r.yaml", rules_doc("http://127.0.0.1:1", "http://127.0.0.1:2"))
    source = RulesSource(path)
    assert (await source.load())[0].ok
    write_rules(path, rules_doc("http://127.0.0.1:1", "http://127.0.0.1:2", stage="legacy"))
    caplog.set_level(logging.INFO, logger="strangler.proxy.reload")
    result, table = await source.load()
    assert result.ok and table.capability("catalog").writes == "legacy"      # still served
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "catalog's writes move service -> legacy with stage cutover -> legacy: the write " \
           "owner moves only in canary" in warning.getMessage()
    caplog.clear()
    write_rules(path, rules_doc("http://127.0.0.1:1", "http://127.0.0.1:2", stage="shadow"))
    assert (await source.load())[0].ok
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]   # a normal move
