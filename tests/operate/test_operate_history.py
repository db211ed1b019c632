"""The audit log: ids follow on however long the entries are; undo targets walk back."""
from __future__ import annotations

from pathlib import Path

from operate import history


def test_ids_follow_on_across_entries_longer_than_a_read_chunk(tmp_path: Path):
    sizes = [10, 20_000, 5, 9_000, 0, 70_000, 3]
    ids = [history.append(tmp_path, {"diff": "x" * n}) for n in sizes]
    assert ids == list(range(1, len(sizes) + 1))
    assert [len(e["diff"]) for e in history.entries(tmp_path)] == sizes


def test_undo_target_skips_undos_and_what_they_undid():
    log = [{"id": 1, "undoes": None}, {"id": 2, "undoes": None}, {"id": 3, "undoes": None},
           {"id": 4, "undoes": 3}, {"id": 5, "undoes": None}, {"id": 6, "undoes": 5}]
    assert history.undo_target(log)["id"] == 2
    assert history.undo_target(log[:5])["id"] == 5
    assert history.undo_target([{"id": 1, "undoes": None}, {"id": 2, "undoes": 1}]) is None
