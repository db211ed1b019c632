"""Where the legacy shop's database is: one rule shared by the server, the CLI and alembic."""
from __future__ import annotations

import os
from pathlib import Path

from strangler.db import normalise_url, sqlite_url

# Relative to the working directory, like any old app's data folder (git-ignored `/var/`).
DEFAULT_SQLITE_PATH = Path("var") / "legacy.db"


def database_url(explicit: str | None = None) -> str:
    """The explicit URL, else `DATABASE_URL`, else the SQLite file `var/legacy.db` (created)."""
    url = explicit or os.environ.get("DATABASE_URL")
    if url:
        return normalise_url(url)
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return sqlite_url(DEFAULT_SQLITE_PATH)
