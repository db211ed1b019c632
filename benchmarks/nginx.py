"""Run nginx from a config template as a foreground process with its own prefix under a temp dir."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from benchmarks.processes import Server, spawn

TEMPLATES = Path(__file__).with_name("nginx")


def render(template: str, values: dict[str, object]) -> str:
    """Fill {{name}} placeholders; a placeholder without a value is an error, not an empty string."""
    text = (TEMPLATES / template).read_text()
    missing = set(re.findall(r"{{(\w+)}}", text)) - values.keys()
    if missing:
        raise KeyError(f"{template}: no value for {sorted(missing)}")
    return re.sub(r"{{(\w+)}}", lambda m: str(values[m.group(1)]), text)


def start_nginx(name: str, template: str, prefix: Path, port: int, **values: object) -> Server:
    """Start nginx with `template` on 127.0.0.1:port; everything it writes stays under `prefix`."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(render(template, {"prefix": prefix, "port": port, **values}))
    # -e: the error log before the config is read (else nginx opens /var/log/nginx/error.log).
    proc = spawn([binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")],
                 prefix / "stdout.log")
    return Server(name, f"http://127.0.0.1:{port}", [proc], prefix / "error.log")
