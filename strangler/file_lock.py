"""Exclusive locks on files, held while the returned file stays open, naming their holder.

One demo (or scenario) per checkout: each starts by wiping its data directory, so a second one
(on other ports, as the port message suggests) would delete and re-seed the stores, rules and
admin token of the one running. cdc.run_lock uses the same lock for one CDC half per SQLite file.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from strangler.errors import OperatorError


class Held(Exception):
    """Someone else holds the lock; str() says who (e.g. "process 4242")."""


def hold(lock_path: Path) -> IO:
    """Take the lock at LOCK_PATH (created if missing) and write our pid into it."""
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise Held(holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle


def hold_data_dir(data_dir: Path, what: str) -> IO:
    """The lock beside DATA_DIR (`var/demo.lock`), or one line saying who runs there."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        return hold(data_dir.with_name(data_dir.name + ".lock"))
    except Held as held:
        raise OperatorError(f"{what} is already running from this checkout ({held}) and owns "
                            f"{data_dir}/; stop it first (Ctrl-C in its terminal), or run this "
                            "one from another checkout") from None
