"""Reports written with -o: whole or not at all, with the usual file mode, and a clear error
(never a traceback) when the path cannot be written."""
from __future__ import annotations

import os
import stat

import pytest

from strangler.errors import OperatorError
from strangler.output import write_document


def test_a_document_goes_to_stdout_or_whole_to_the_file(tmp_path, capsys):
    assert write_document("to stdout\n", None) is False
    assert capsys.readouterr().out == "to stdout\n"
    target = tmp_path / "report.html"
    target.write_text("the old report")
    old = os.umask(0o022)
    try:
        assert write_document("<html>new</html>", str(target)) is True
    finally:
        os.umask(old)
    assert target.read_text() == "<html>new</html>"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644      # readable like any file written
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]   # no temp file left


def test_an_unwritable_path_is_named_with_what_to_do(tmp_path):
    with pytest.raises(OperatorError, match=r"folder .*nowhere does not exist; create it"):
        write_document("x", str(tmp_path / "nowhere" / "r.txt"))
    with pytest.raises(OperatorError, match="is a folder; give a file name"):
        write_document("x", str(tmp_path))
    assert list(tmp_path.iterdir()) == []
