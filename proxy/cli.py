"""`strangler proxy`: run the routing proxy (workers, admin API, hot reload)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
import sys
import tempfile
from pathlib import Path

from proxy.runtime import Runtime
from proxy.settings import Limits, ProxySettings, parse_networks
from strangler.errors import OperatorError
from strangler.help_text import help_line

TOKEN_FILE = Path("var/admin.token")
DEFAULTS = Limits()


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host.strip("[]") or "127.0.0.1", int(port)


def register(subparsers) -> None:
    p = subparsers.add_parser("proxy", help=help_line(run), description=run.__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rules", required=True, type=Path, help="rule file or directory of *.yaml")
    p.add_argument("--listen", type=_address, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                   help="client-facing address (default 127.0.0.1:8080)")
    p.add_argument("--admin", type=_address, default=("127.0.0.1", 8081), metavar="HOST:PORT",
                   help="admin API address (default 127.0.0.1:8081)")
    p.add_argument("--admin-allow-remote", action="store_true",
                   help="allow the admin API on a non-loopback address")
    p.add_argument("--admin-token-file", type=Path,
                   help="file holding the admin bearer token (else $STRANGLER_ADMIN_TOKEN, "
                        "else one is generated into var/admin.token)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="worker processes sharing the port (default: CPU count; 0 = in-process)")
    p.add_argument("--trusted-proxy", action="append", default=[], metavar="CIDR",
                   help="peer whose X-Forwarded-* headers are kept (repeatable)")
    p.add_argument("--access-log", metavar="PATH|-", help="JSON-lines access log (- = stdout)")
    p.add_argument("--shadow-store", metavar="URL",
                   help="where shadow comparisons are stored (default: $STRANGLER_SHADOW_STORE "
                        "or proxy.shadow's default)")
    p.add_argument("--no-shadow", action="store_true",
                   help="never send shadow copies, whatever the rules plan")
    p.add_argument("--max-body", type=int, default=DEFAULTS.max_body_bytes, metavar="BYTES",
                   help="largest request body accepted (default 100 MiB); larger gets 413")
    p.add_argument("--max-header-bytes", type=int, default=DEFAULTS.max_header_bytes,
                   metavar="BYTES", help="largest request head (default 16 KiB); larger gets 431")
    p.add_argument("--max-headers", type=int, default=DEFAULTS.max_headers, metavar="N",
                   help="most request headers (default 100); more gets 431")
    p.add_argument("--client-body-timeout", type=float, default=DEFAULTS.client_body_timeout_s,
                   metavar="SECONDS",
                   help="a client silent this long while sending a request body gets 408 and is "
                        "closed (default 10); the backend is not blamed")
    p.add_argument("--client-send-timeout", type=float, default=DEFAULTS.client_send_timeout_s,
                   metavar="SECONDS",
                   help="a client reading none of its answer this long is cut off (default 60, "
                        "nginx's send_timeout); the backend is not blamed")
    p.add_argument("--buffer-body-up-to", type=int, default=DEFAULTS.buffer_body_bytes,
                   metavar="BYTES",
                   help="read request bodies up to this size whole before taking an upstream "
                        "connection, so slow uploads hold none (default 64 KiB; memory is at "
                        "most this times the uploads in progress); larger bodies stream; 0 = off")
    p.set_defaults(func=run)


MIN_TOKEN_CHARS = 16


def admin_token(token_file: Path | None) -> str:
    """From the file, the environment, or a fresh one written to var/admin.token (0600).
    A given token must be long enough to resist guessing; a token file others can read is
    used, with a warning (mounted secrets are often 0644), as ssh would not."""
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
            mode = token_file.stat().st_mode & 0o777
        except OSError as exc:
            raise OperatorError(f"cannot read --admin-token-file {token_file}: {exc.strerror}")
        if not token:
            raise OperatorError(f"--admin-token-file {token_file} is empty; put a token in it")
        if mode & 0o077:
            print(f"strangler proxy: warning: --admin-token-file {token_file} is readable by "
                  f"other users (mode {mode:04o}); chmod 600 it", file=sys.stderr, flush=True)
        return _long_enough(token, f"--admin-token-file {token_file}")
    if os.environ.get("STRANGLER_ADMIN_TOKEN", "").strip():
        return _long_enough(os.environ["STRANGLER_ADMIN_TOKEN"].strip(), "STRANGLER_ADMIN_TOKEN")
    token = secrets.token_urlsafe(32)
    TOKEN_FILE.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name (O_EXCL, 0600): a stale or planted temp file must not decide the mode or,
    # as a symlink, where the token goes.
    fd, tmp = tempfile.mkstemp(dir=TOKEN_FILE.parent, prefix=".admin.token.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
        os.replace(tmp, TOKEN_FILE)
    except BaseException:
        os.unlink(tmp)
        raise
    print(f"strangler proxy: admin token written to {TOKEN_FILE.resolve()}", flush=True)
    return token


def _long_enough(token: str, source: str) -> str:
    if len(token) < MIN_TOKEN_CHARS:
        raise OperatorError(f"the admin token from {source} has {len(token)} characters; use at "
                            f"least {MIN_TOKEN_CHARS} (e.g. `openssl rand -hex 32`), or give none "
                            "and one is generated into var/admin.token")
    return token


def settings_from(args: argparse.Namespace) -> ProxySettings:
    if not args.rules.exists():
        raise OperatorError(f"rules not found: {args.rules}; pass --rules FILE|DIR")
    if args.workers < 0:
        raise OperatorError("--workers must be 0 (in-process) or more")
    if not args.client_body_timeout > 0:
        raise OperatorError("--client-body-timeout must be more than 0 seconds (e.g. 10)")
    if not args.client_send_timeout > 0:
        raise OperatorError("--client-send-timeout must be more than 0 seconds (e.g. 60)")
    if args.buffer_body_up_to < 0:
        raise OperatorError("--buffer-body-up-to must be 0 (off) or more bytes (e.g. 65536)")
    try:
        trusted = parse_networks(args.trusted_proxy)
    except ValueError as exc:
        raise OperatorError(f"--trusted-proxy: {exc}; give a CIDR such as 10.0.0.0/8") from None
    return ProxySettings(
        rules_path=args.rules, listen_host=args.listen[0], listen_port=args.listen[1],
        admin_host=args.admin[0], admin_port=args.admin[1], admin_allow_remote=args.admin_allow_remote,
        admin_token=admin_token(args.admin_token_file), workers=args.workers,
        trusted_proxies=trusted, access_log=args.access_log,
        limits=Limits(max_body_bytes=args.max_body, max_header_bytes=args.max_header_bytes,
                      max_headers=args.max_headers,
                      client_body_timeout_s=args.client_body_timeout,
                      client_send_timeout_s=args.client_send_timeout,
                      buffer_body_bytes=args.buffer_body_up_to))


def run(args: argparse.Namespace) -> int:
    """Run the routing proxy: forward by the rules, hot-reload them, serve the admin API.

    Reload the rules by saving the file, `kill -HUP <pid>`, or
    `curl -X POST -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8081/admin/reload`.
    SIGTERM/SIGINT stop accepting, finish in-flight requests, then exit.
    """
    import uvloop
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s supervisor[%(process)d] %(levelname)s %(message)s")
    if not args.no_shadow:      # before anything is written (the admin token file)
        from proxy.shadow.store import check_store_url, default_store_url
        check_store_url(args.shadow_store or default_store_url())
    settings = settings_from(args)
    sink_factory, admin_routes, shadow_process = None, (), None
    if not args.no_shadow:
        # Imported here: the shadow side (SQLAlchemy store, comparison) loads only when used.
        from proxy.shadow.admin import shadow_routes
        from proxy.shadow.dispatcher import sink_factory as shadow_sink_factory
        from proxy.shadow.store import default_store_url
        store = args.shadow_store or default_store_url()
        sink_factory, admin_routes = shadow_sink_factory(store), shadow_routes(store)
        if args.workers:    # shadows run in their own process, off the workers' loops
            from proxy.shadow.process import ShadowProcess
            shadow_process = ShadowProcess(settings, store)
            sink_factory = shadow_process.sink_factory
    runtime = Runtime(settings, sink_factory=sink_factory, admin_routes=admin_routes,
                      in_process=args.workers == 0, shadow_process=shadow_process)
    if not args.no_shadow:
        runtime.gates.shadow_store = store      # the shadow-match gate reads the same results
    return uvloop.run(serve(runtime))


async def serve(runtime: Runtime) -> int:
    settings = runtime.settings
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.create_task(runtime.reload("SIGHUP")))
    await runtime.start()
    print(f"strangler proxy: listening on http://{settings.listen_host}:{settings.listen_port} "
          f"({len(runtime.workers)} worker{'s' if len(runtime.workers) != 1 else ''}), admin on "
          f"http://{settings.admin_host}:{settings.admin_port}", flush=True)
    try:
        await stop.wait()
        print("strangler proxy: stopping (finishing in-flight requests)", flush=True)
    finally:
        await runtime.stop()
    print("strangler proxy: stopped", flush=True)
    return 0
