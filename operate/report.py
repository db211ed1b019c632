"""`strangler report CAP`: one hand-over document for a capability: rollout state and gates, the
live figures when proxies are given, the newest history entries, CDC figures, and the shadow
report rendered by proxy.shadow's own renderers (this module adds sections and, when there are
no shadow results, says why in place of a renderer's "No shadow results yet."; it never
re-renders results)."""
from __future__ import annotations

import time
from dataclasses import asdict
from html import escape
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from operate import history
from operate.actions import find_capability
from operate.admin_client import AdminClient
from operate.rule_edit import compile_rules, read_rules
from operate.status import capability_view, cdc_directions, lag_of, live_from
from proxy.shadow.cli import require_store
from proxy.shadow.formats import render as render_shadow
from proxy.shadow.report import build_report, report_from_snapshot
from proxy.shadow.store import STORE_ENV, ShadowStore, Snapshot, check_store_url, default_store_url
from strangler.db import normalise_url, sqlite_path
from strangler.errors import OperatorError

HISTORY_LINES = 10
EMPTY_SHADOW = "No shadow results yet."     # what proxy.shadow's renderers say for no results


def build(rules_path: str | Path, capability: str, store_url: str | None,
          client: AdminClient | None, since_s: float | None = None) -> dict[str, Any]:
    """STORE_URL None: the shadow report comes from the first proxy's /admin/shadow (the store
    it writes, wherever that is), else from the default store."""
    rules = read_rules(rules_path)
    cap = find_capability(compile_rules(rules), capability)
    cdc = cdc_directions(cap)
    view = capability_view(cap, live_from(client), lag_of(cdc))
    log = [e for e in history.entries(history.history_dir(rules.path))
           if e.get("capability") == capability][-HISTORY_LINES:]
    note = None
    if store_url is None and client is not None and client.urls:
        shadow = client.shadow(client.urls[0], capability,
                               None if since_s is None else f"{max(1, round(since_s))}s")
    else:
        shadow, note = shadow_report(store_url or default_store_url(), capability, since_s,
                                     given=store_url is not None)
    return {"capability": capability, "rules_version": rules.version,
            "rollout": view, "proxies": list(client.urls) if client else [],
            "history": [{k: e.get(k) for k in ("id", "at", "who", "why", "command", "summary")}
                        for e in log],
            "cdc": [asdict(d) for d in cdc] if cdc else None,
            "shadow": shadow, "shadow_note": note}


def shadow_report(store_url: str, capability: str, since_s: float | None,
                  given: bool = True) -> tuple[dict[str, Any], str | None]:
    """The shadow report from the results store, and a note when it is empty for want of a store.

    A store the operator named (GIVEN) must exist, checked as `strangler shadow report` checks
    it: a mistyped path is an error, not an empty report. The default store that does not exist
    yet gives an empty report (no file created: nothing was shadowed) saying where it looked."""
    if given:
        require_store(store_url)
    else:
        check_store_url(store_url)
        path = sqlite_path(store_url)
        if path is not None and not path.exists():
            empty = {**report_from_snapshot(Snapshot()), "since": None,
                     "generated_at": time.time(), "capability_filter": capability}
            return empty, (f"No shadow results yet: no shadow store at {path} (the default; "
                           f"pass --store, set {STORE_ENV} or pass --proxy to read the one the "
                           "proxy writes).")
    url = make_url(normalise_url(store_url))
    store = ShadowStore(store_url)
    try:
        return build_report(store, capability=capability, since_s=since_s), None
    except SQLAlchemyError as exc:
        raise OperatorError(f"cannot read the shadow store {url.render_as_string()}: "
                            f"{type(exc).__name__}; check --store and that the database is "
                            "up") from None
    finally:
        store.engine.dispose()


def lines(doc: dict[str, Any]) -> list[str]:
    """The rollout, history and CDC sections as plain lines (shared by text and Markdown)."""
    r = doc["rollout"]
    share = r["percent"] if r["stage"] == "canary" else r["service_percent"]
    out = [f"stage {r['stage']}, writes {r['writes']}, service answers {share:g} % of reads"
           + (f" (next step {r['next_step']:g} %)" if r["next_step"] is not None else ""),
           "gates: " + ", ".join(f"{k} {v}" for k, v in r["gates"].items() if v is not None),
           "CDC lag: " + ("n/a (not measured: no CDC config or no applied event)"
                          if r["cdc_lag_s"] is None else f"{r['cdc_lag_s']:.1f} s")]
    f, v = r["figures"], r["verdict"]
    if f is None:
        out.append("live figures: none (no proxy given: pass --proxy)")
    else:
        out.append(f"live figures over {f['window_s']:.0f} s from {len(doc['proxies'])} "
                   f"prox{'y' if len(doc['proxies']) == 1 else 'ies'}: legacy "
                   f"{f['legacy']['requests']} requests, service {f['service']['requests']}")
        if r["stage"] == "canary":
            out.append(f"gates: {v['state']}")
            out += [f"  {c['gate']}: {c['state']}: {c['detail']}" for c in v["checks"]]
        else:       # as status shows it: the gates judge promotion, which is canary's
            out.append(f"gates: not judged in stage {r['stage']} (they decide promotion, "
                       "in canary)")
    for d in doc["cdc"] or []:
        out.append(f"CDC {d['direction']} ({d['consumer']}): DLQ {d['dlq_size']}, retained WAL "
                   f"{'n/a' if d['retained_wal_bytes'] is None else d['retained_wal_bytes']}")
        out += [f"  {t['table']}: {t['events']} events, lag "
                f"{'-' if t['lag_ms'] is None else t['lag_ms']} ms, idle "
                f"{'-' if t['idle_s'] is None else round(t['idle_s'], 1)} s"
                for t in d["tables"]]
    out.append("history (newest last):" if doc["history"] else "history: no recorded change")
    out += [f"  #{e['id']} {e['at']} {e['who']}: {e['summary']}"
            + (f" ({e['why']})" if e.get("why") else "") for e in doc["history"]]
    return out


def render(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return render_shadow(doc, "json")
    shadow = render_shadow(doc["shadow"], fmt)
    if doc.get("shadow_note"):
        note = escape(doc["shadow_note"]) if fmt == "html" else doc["shadow_note"]
        shadow = shadow.replace(EMPTY_SHADOW, note, 1)
    title = f"Capability {doc['capability']} (rules {doc['rules_version']})"
    if fmt == "markdown":
        return "\n".join([f"# {title}", ""] + [f"- {line}" if not line.startswith("  ")
                                              else f"  - {line.strip()}" for line in lines(doc)]
                         + ["", shadow])
    if fmt == "html":
        section = (f"<h1>{escape(title)}</h1><pre>{escape(chr(10).join(lines(doc)))}</pre>")
        return shadow.replace("<body>", "<body>" + section, 1)
    return "\n".join([title, *lines(doc), "", shadow])
