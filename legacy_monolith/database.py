"""The shop's database from aiohttp handlers: sync SQLAlchemy on a small thread pool.

Handlers never touch the engine directly; they hand a plain function of a `Session` to
`read` or `write`, which run it off the event loop. `write` is the one place that decides
commit or rollback, so an error or a dry run can never leave half a change behind.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from sqlalchemy.orm import Session

from strangler.db import make_engine

T = TypeVar("T")

# Threads and pooled connections match, so a query never waits for a connection it cannot get.
WORKERS = 8


class Database:
    def __init__(self, url: str) -> None:
        sqlite = url.startswith("sqlite")
        self.engine = make_engine(url, **({} if sqlite else {"pool_size": WORKERS,
                                                               "max_overflow": 0}))
        self._executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="legacy-db")

    async def read(self, fn: Callable[..., T], *args) -> T:
        return await self._run(partial(self._read, fn, *args))

    async def write(self, fn: Callable[..., T], *args, dry_run: bool = False) -> T:
        """Run `fn(session, *args)` in one transaction: committed, or rolled back on error/dry run."""
        return await self._run(partial(self._write, fn, args, dry_run))

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    def _read(self, fn: Callable[..., T], *args) -> T:
        with Session(self.engine) as session:
            return fn(session, *args)

    def _write(self, fn: Callable[..., T], args: tuple, dry_run: bool) -> T:
        with Session(self.engine) as session:
            try:
                result = fn(session, *args)
            except BaseException:
                session.rollback()
                raise
            if dry_run:
                session.rollback()
            else:
                session.commit()
            return result

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.engine.dispose()
