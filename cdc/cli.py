"""`strangler cdc ...`: run the pipeline, see its state, re-snapshot, verify, handle dead letters."""
from __future__ import annotations

import argparse
import functools
import json
import logging
import signal
import sys
from pathlib import Path

from cdc.config import CdcConfig, load_config
from cdc.mapping import DIRECTIONS
from cdc.mapping_check import check_stores
from strangler.db import sqlite_path
from strangler.errors import OperatorError
from strangler.help_text import help_line


def register(subparsers) -> None:
    cdc = subparsers.add_parser("cdc", help="change data capture between the legacy and service stores")
    sub = cdc.add_subparsers(dest="cdc_command", metavar="CDC_COMMAND")
    cdc.set_defaults(func=lambda args: (cdc.print_help(), 2)[1])

    def command(name: str, func, capability: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_line(func),
                           description=(func.__doc__ or "").strip())
        if capability:
            p.add_argument("capability", help="capability name, e.g. catalog")
        p.add_argument("--config", help="CDC config file (default routing_rules/cdc/CAPABILITY.yaml)")
        p.set_defaults(func=_stores_reachable(func))
        return p

    run = command("run", run_cmd)
    run.add_argument("--direction", choices=["auto", "both", *DIRECTIONS], default="auto",
                     help="auto: away from whoever owns writes (as the routing rules named by `rules:` "
                          "say, else the config's `writes:`); both: while "
                          "write ownership may switch (loop-free; only legacy->service snapshots)")
    run.add_argument("--only", choices=["capture", "apply"], help="run one half (e.g. as separate processes)")
    run.add_argument("--no-snapshot", action="store_true", help="stream only; skip the initial snapshot")
    run.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C/SIGTERM)")

    status = command("status", status_cmd)
    status.add_argument("--prometheus", action="store_true", help="Prometheus text format")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between the two readings")

    snap = command("snapshot", snapshot_cmd)
    snap.add_argument("table", help="source table to re-send (e.g. products)")
    snap.add_argument("--direction", choices=["auto", *DIRECTIONS], default="auto")

    verify = command("verify", verify_cmd)
    verify.add_argument("--repair", action="store_true", help="re-emit differing rows through the pipeline")
    verify.add_argument("--direction", choices=["auto", *DIRECTIONS], default="auto")
    verify.add_argument("--chunk-rows", type=int, default=2000)
    verify.add_argument("--recheck-rounds", type=int, default=5)
    verify.add_argument("--json", action="store_true", help="machine-readable report")

    drain = command("drain", drain_cmd)
    drain.add_argument("--direction", choices=["auto", *DIRECTIONS], default="auto")
    drain.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")

    dlq = command("dlq", dlq_cmd)
    dlq.add_argument("--direction", choices=["auto", *DIRECTIONS], default="auto")
    group = dlq.add_mutually_exclusive_group()
    group.add_argument("--replay", type=int, nargs="+", metavar="ID", help="re-apply these letters")
    group.add_argument("--all", action="store_true", help="re-apply every letter")
    dlq.add_argument("--force", action="store_true",
                     help="replay letters of the direction away from the old write owner too")


def _stores_reachable(func):
    """A store that cannot be opened is one line naming the database, not a traceback."""
    @functools.wraps(func)
    def guarded(args) -> int:
        from sqlalchemy.exc import OperationalError
        try:
            return func(args)
        except (OperationalError, *_driver_connect_errors()) as exc:
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise OperatorError(f"cannot open a CDC store: {reason}; check the legacy and service "
                                "URLs of the CDC config and that the database runs") from None
    return guarded


def _driver_connect_errors() -> tuple[type[BaseException], ...]:
    """The drivers' own connection errors (capture and snapshot use psycopg2 directly)."""
    import sqlite3

    import psycopg2
    return (psycopg2.OperationalError, sqlite3.OperationalError)


def _config(args, broker: bool = False) -> CdcConfig:
    """The config, its SQLite stores checked to exist (SQLite would create an empty file and
    CDC would then read or fill the wrong database without a word), its mapping against both
    stores, and with BROKER a Kafka transport's broker answering (else one line naming the
    address, instead of librdkafka retrying into the log without end)."""
    config = load_config(args.capability, args.config)
    for name, side in (("legacy", config.legacy), ("service", config.service)):
        path = sqlite_path(side.url)
        if path is not None and not path.is_file():
            relative = "" if path.is_absolute() else f" (relative to the current directory {Path.cwd()})"
            raise OperatorError(f"{name} store {side.url}: no database at {path}{relative}; run "
                                "where the stores live or give an absolute URL in the CDC config "
                                "(or its environment variable)")
    check_stores(config)
    if broker and config.transport.kind == "kafka":
        from cdc.transport_kafka import unreachable
        why = unreachable(config.transport.bootstrap)
        if why is not None:
            raise OperatorError(f"cannot reach the Kafka broker at {config.transport.bootstrap} "
                                f"(transport.bootstrap in {config.path}): {why}; start it "
                                "(scripts/kafka.sh start) or fix the address")
    return config


def _one_direction(config: CdcConfig, choice: str) -> str:
    return config.directions(choice)[0]


def run_cmd(args) -> int:
    """Run capture and apply until stopped (Ctrl-C or SIGTERM stop it cleanly).

    Both halves resume where they durably left off: capture from the slot, apply from the
    offsets stored in the target. `--only` runs one half, so they can be separate processes.
    """
    import threading

    from cdc.pipeline import Pipeline
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = _config(args, broker=True)
    parts = (args.only,) if args.only else ("capture", "apply")
    directions = config.directions(args.direction)
    locks = _run_locks(config, directions, parts)
    pipeline = Pipeline(config, directions, parts=parts, snapshot=not args.no_snapshot)
    signal.signal(signal.SIGTERM, lambda *_: pipeline.stop.set())
    pipeline.start()
    timer = threading.Timer(args.seconds, pipeline.stop.set) if args.seconds else None
    if timer:
        timer.start()
    said: dict[str, tuple[int, int]] = {}
    try:
        while not pipeline.stop.is_set():
            pipeline.stop.wait(10)
            for loop in pipeline.applies:       # only when it moved: an idle line every 10 s
                now = (loop.stats.events, loop.stats.dead)   # buried the demo's instructions
                if said.get(loop.route.name, (0, 0)) != now:
                    said[loop.route.name] = now
                    logging.getLogger("cdc").info("%s: %d events applied, %d dead-lettered",
                                                  loop.route.name, *now)
    except KeyboardInterrupt:
        pass
    finally:
        if timer:
            timer.cancel()
        pipeline.close()
        for lock in locks:
            lock.release()
    return 0


def _run_locks(config: CdcConfig, directions: list[str], parts: tuple[str, ...]) -> list:
    """Each half this run starts, locked in the database it works on (capture: the source,
    apply: the target), so a second `cdc run` of the same halves is refused, not doubled."""
    from cdc.run_lock import RunLock
    locks = []
    try:
        for direction in directions:
            route = config.route(direction)
            for part in parts:
                url = route.source.url if part == "capture" else route.target.url
                lock = RunLock(url, f"{route.name} {part}")
                lock.acquire()
                locks.append(lock)
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    return locks


def status_cmd(args) -> int:
    """Per table and direction: events/s, lag, last applied position, retained WAL, DLQ size."""
    from cdc.status import gather, render_prometheus, render_text
    config = _config(args)
    status = gather(config, interval_s=args.interval)
    print(render_prometheus(config.capability, status) if args.prometheus
          else render_text(config.capability, status), end="" if args.prometheus else "\n")
    return 0


def snapshot_cmd(args) -> int:
    """Re-send every current row of one source table through the pipeline (safe while streaming)."""
    from cdc.pipeline import backend
    from cdc.resnapshot import emit_rows
    config = _config(args, broker=True)
    route = config.route(_one_direction(config, args.direction))
    if args.table not in route.source_tables:
        raise OperatorError(f"{args.table!r} is not a source table of {route.name}; "
                            f"use one of {list(route.source_tables)}")
    if backend(route.source.url) != "postgresql":
        raise OperatorError("on-demand snapshots need a PostgreSQL source; for SQLite re-run the capture's snapshot")
    sent = emit_rows(config, route, args.table)
    print(f"{args.table}: {sent} rows re-sent as op r to {route.topic(args.table)}")
    return 0


def verify_cmd(args) -> int:
    """Compare both stores after mapping (counts, chunked checksums, then the rows); exit 1 on differences."""
    from cdc.verify import verify
    config = _config(args, broker=args.repair)
    report = verify(config, _one_direction(config, args.direction), repair=args.repair,
                    chunk_rows=args.chunk_rows, recheck_rounds=args.recheck_rounds)
    if args.json:
        print(json.dumps(report.as_dict(), default=str, indent=2))
    else:
        for t in report.tables:
            print(f"{t.source} -> {t.target}: source {t.source_rows} rows, target {t.target_rows} rows, "
                  f"{t.chunks} chunks ({t.chunks_differing} differing); missing {len(t.missing)}, "
                  f"extra {len(t.extra)}, different {len(t.different)}")
            for sample in t.samples:
                print(f"  key {sample['key']}: source {sample['source']} target {sample['target']}")
            for key, reason in t.repair_failures[:20]:      # repairs the target refused
                print(f"  key {list(key)}: not repaired: {reason}")
        print(f"{report.differences} differences" + (f"; {report.repaired} rows re-emitted" if args.repair else ""))
    return 0 if report.differences == 0 else 1


def drain_cmd(args) -> int:
    """Wait until every change the source has now is applied to the target; exit 1 on timeout.

    For switching write ownership: stop writes on the old owner, drain its direction, then let
    the new owner write (with `run --direction both`, the other direction is already streaming).
    """
    from cdc.drain import drain
    config = _config(args, broker=True)
    direction = _one_direction(config, args.direction)
    if drain(config, direction, timeout_s=args.timeout):
        route = config.route(direction)
        waiting = _dead_letters(config, route)
        if waiting:     # caught up, yet these changes never landed: switching now loses them
            flag = f" --config {args.config}" if args.config else ""
            print(f"{route.name}: caught up, but {waiting} change(s) are dead-lettered, not "
                  f"applied; fix their cause and replay them (`strangler cdc dlq "
                  f"{args.capability} --direction {direction}{flag}` lists them) before moving "
                  "writes", file=sys.stderr)
            return 1
        print(f"{route.name}: drained")
        return 0
    print(f"{config.route(direction).name}: not drained after {args.timeout:g}s; see `strangler cdc status`",
          file=sys.stderr)
    return 1


def _dead_letters(config: CdcConfig, route) -> int:
    from cdc import dlq
    from cdc.pipeline import make_applier
    applier = make_applier(config, route)
    try:
        return dlq.size(applier.store, route.name)
    finally:
        applier.store.close()


def dlq_cmd(args) -> int:
    """List dead-lettered events, or replay them (--replay ID..., --all) once the cause is fixed."""
    from cdc import dlq
    from cdc.apply import STALE
    from cdc.pipeline import make_applier
    config = _config(args)
    route = config.route(_one_direction(config, args.direction))
    applier = make_applier(config, route)
    try:
        if not (args.replay or args.all):
            found = dlq.letters(applier.store, route.name)
            for lt in found:
                print(f"{lt.id:>6} {lt.created_at[:19]} {lt.topic}[{lt.partition}]@{lt.offset} "
                      f"{lt.kind}: {lt.reason}")
            print(f"{len(found)} dead letters for {route.name}")
            return 0
        if route.direction != config.write_direction and not args.force:
            # The source of these letters no longer owns writes: the owner may have written
            # the same rows since, and a replay would put the old change over its newer one.
            raise OperatorError(
                f"writes now go to {config.writes}, so the letters of {route.name} hold changes "
                "of the old owner; replaying one could overwrite a newer write of the owner to "
                "the same row. Check each row first, then add --force to replay anyway")
        found = dlq.letters(applier.store, route.name, ids=None if args.all else args.replay)
        if args.replay and len(found) != len(set(args.replay)):
            missing = sorted(set(args.replay) - {lt.id for lt in found})
            config_flag = f" --config {args.config}" if args.config else ""
            raise OperatorError(f"no dead letter with id {missing} for {route.name}; list them with "
                                f"`strangler cdc dlq {args.capability}{config_flag}`")
        result = dlq.replay(applier, found)
        stale = [i for i, r in result.items() if r == STALE]
        failed = {i: r for i, r in result.items() if r not in (None, STALE)}
        for i, reason in failed.items():
            print(f"{i}: still failing: {reason}", file=sys.stderr)
        print(f"{len(result) - len(failed) - len(stale)} applied, {len(stale)} dropped as "
              f"overtaken by a newer change of their row, {len(failed)} still failing")
        return 0 if not failed else 1
    finally:
        applier.store.close()
