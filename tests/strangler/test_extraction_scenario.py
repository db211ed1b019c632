"""Issue 6: one whole extraction of the catalog, end to end, under load, on PostgreSQL and Kafka.

Real processes on free loopback ports (legacy shop, catalog service, a 2-worker proxy, CDC both
ways through Kafka); `strangler.scenario` walks the stages while `strangler.load` shops through
the proxy. Every check is asserted on what the run recorded.
"""
from __future__ import annotations

import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient
from sqlalchemy import text

from strangler.cli import main
from strangler.db import make_engine
from strangler.scenario import MIN_MATCH, Scenario, Stores, checks, shadow_mismatches


def _cleanup_cdc(admin_url: str, name: str, kafka: str) -> None:
    """What the pipeline leaves outside the test databases: replication origins and topics."""
    engine = make_engine(admin_url)
    with engine.begin() as conn:
        conn.execute(text("SELECT pg_replication_origin_drop(roname) FROM pg_replication_origin "
                          "WHERE roname LIKE :p"), {"p": f"strangler_{name}%"})
    engine.dispose()
    admin = AdminClient({"bootstrap.servers": kafka})
    topics = [t for t in admin.list_topics(timeout=10).topics if t.startswith(name)]
    if topics:
        for deleted in admin.delete_topics(topics).values():
            deleted.result(timeout=30)        # sent and done before the client goes away


async def test_catalog_extraction_under_load_loses_no_request_and_ends_with_identical_stores(
        pg_database, pg_admin_url, kafka_bootstrap, tmp_path: Path):
    name = f"sc{uuid.uuid4().hex[:8]}"
    stores = Stores(pg_database("legacy"), pg_database("catalog"), kafka_bootstrap, name)
    lines: list[str] = []
    try:
        async with Scenario(tmp_path / "run", stores, say=lines.append) as scenario:
            outcome = await scenario.run()
    finally:
        _cleanup_cdc(pg_admin_url, name, kafka_bootstrap)
    print("\n".join(lines))

    load = outcome.load
    assert load.requests > 500 and load.count("checkout", 201) > 0, load.summary()
    assert load.failures == [], load.failures[:5]
    # ...because the proxy's fallback answered from legacy what the crashed and the broken
    # release could not.
    assert outcome.fallbacks["crash"] > 0 and outcome.fallbacks["broken release"] > 0

    assert outcome.verify_code == 0, outcome.verify_output
    assert len(outcome.price_edits) >= 3
    assert outcome.prices_seen["legacy"] == outcome.prices_seen["service"] == outcome.price_edits

    # Shadow: the service matched legacy before canary and again from the fixed release up to
    # cutover; the broken release's 500s in between show up as status mismatches.
    for shadow in (outcome.shadow_before_canary, outcome.shadow_fixed_release):
        assert shadow["compared"] >= 300 and shadow["match_rate"] >= MIN_MATCH, shadow
    assert shadow_mismatches(outcome.shadow_before_cutover) > 0

    commands = [e["command"] for e in reversed(outcome.history)]
    rollbacks = [e for e in outcome.history if e["who"].startswith("proxy")]
    assert len(rollbacks) == 1 and "rollout catalog 0" in rollbacks[0]["command"], rollbacks
    assert rollbacks[0]["why"].startswith("automatic rollback: error_rate"), rollbacks
    assert commands[:3] == ["stage catalog shadow", "stage catalog canary", "rollout catalog 1"]
    assert commands[-3:] == ["writes catalog service", "cutover catalog",
                             "retire catalog"], commands
    # `strangler history catalog` (the text an operator reads) shows every entry, the proxy's too.
    shown = {line.split()[0] for line in outcome.history_text.splitlines()[1:] if line.strip()}
    assert shown == {str(e["id"]) for e in outcome.history}, outcome.history_text
    assert f" {rollbacks[0]['who'][:12]}" in outcome.history_text, outcome.history_text

    assert all(held for _, held, _ in checks(outcome)), checks(outcome)


def test_demo_scenario_needs_products_to_shop_for(capsys):
    assert main(["demo", "--scenario", "--products", "5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "strangler: error: --products must be >= 10 for the scenario, got 5")


def test_the_history_check_wants_every_step_in_order():
    """The scenario's history check is a subsequence test, not "some proxy entry and some retire"."""
    from strangler.scenario import STEPS_IN_HISTORY, _in_order
    walk = [{"who": "proxy:h:1" if who else "scenario", "command": command or "rollout catalog 0"}
            for who, command in STEPS_IN_HISTORY]
    promote = {"who": "scenario", "command": "rollout catalog 5"}
    newest_first = list(reversed(walk[:3] + [promote] + walk[3:]))
    assert _in_order(newest_first, STEPS_IN_HISTORY)
    no_rollback = [e for e in newest_first if not e["who"].startswith("proxy")]
    assert not _in_order(no_rollback, STEPS_IN_HISTORY)
    swapped = newest_first[:]
    swapped[0], swapped[1] = swapped[1], swapped[0]          # retire before cutover
    assert not _in_order(swapped, STEPS_IN_HISTORY)
