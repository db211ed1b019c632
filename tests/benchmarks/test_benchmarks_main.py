"""`python -m benchmarks`: every benchmark is a sub-command that answers --help (and lists in
the top-level help), so `make bench`-style entry points stay discoverable."""
from __future__ import annotations

import pytest

from benchmarks.__main__ import COMMANDS, main

EXPECTED = {"proxy", "shadow", "shadow-cpu", "rules", "rule-edit", "cdc", "cdc-capture",
            "legacy-seed", "gate-watch"}


def test_every_benchmark_is_listed_in_the_top_level_help(capsys):
    assert set(COMMANDS) == EXPECTED
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_benchmark_answers_help_without_running(name, capsys):
    with pytest.raises(SystemExit) as done:
        main([name, "--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_an_unknown_benchmark_is_refused_with_the_list(capsys):
    with pytest.raises(SystemExit) as done:
        main(["nope"])
    assert done.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
