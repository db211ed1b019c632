"""One demo (or scenario) per checkout at a time: each starts by wiping its data directory, so
a second one (on other ports, as the port message suggests) would delete and re-seed the
stores, rules and admin token of the one running."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from strangler.errors import OperatorError


def hold(data_dir: Path, what: str) -> IO:
    """An exclusive lock beside DATA_DIR, held as long as the returned file stays open."""
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir.with_name(data_dir.name + ".lock")
    handle = open(lock_path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise OperatorError(f"{what} is already running from this checkout ({holder}) and owns "
                            f"{data_dir}/; stop it first (Ctrl-C in its terminal), or run this "
                            "one from another checkout") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    return handle
