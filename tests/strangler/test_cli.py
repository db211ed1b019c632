"""The `strangler` entry point's own edges."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_reader_that_left_the_pipe_stops_it_quietly():
    """`strangler rules validate ... | head` whose reader is gone: no BrokenPipeError traceback."""
    read_end, write_end = os.pipe()
    os.close(read_end)                           # nobody will read: every write fails
    try:
        done = subprocess.run([sys.executable, "-m", "strangler", "rules", "validate",
                               str(ROOT / "routing_rules" / "demo.yaml")], cwd=ROOT,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 141 and done.stderr == "", done.stderr
