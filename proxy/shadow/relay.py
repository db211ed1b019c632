"""The ShadowSink of a worker process when shadows run in the shadow process (proxy.shadow.process).

Everything a shadow costs beyond capture happens elsewhere: `submit_capture` only appends the
unparsed capture to a bounded batch, and a timer flushes the batch every FLUSH_EVERY_S as ONE
pickled write on a unix socket to the shadow process, which parses it. A capture travels as a tuple of bytes and
numbers with its decision as a number: each distinct decision is sent once per connection (pickling one costs
~25 us, the rest of an exchange ~3). When the batch is full, the socket's buffer is full or the shadow process is
down, shadows are dropped and counted here (the worker's counters reach /metrics like all
others); drops and skips are also sent along, as counts, for the results store. The shadow
process says when its own queue is full (one byte back on the socket), so workers shed before
capturing, pickling and sending what would be dropped there anyway. And a worker whose own loop
is saturated (proxy.shadow.saturation) sheds every shadow until it has room: its clients come
first, and a shadow queue that has room says nothing about the worker.
"""
from __future__ import annotations

import asyncio
import logging
import pickle
import struct
from typing import Any

from proxy.decision import Decision
from proxy.exchange import Capture
from proxy.metrics import Metrics
from proxy.shadow import saturation

log = logging.getLogger(__name__)

# Each write wakes the shadow process: every 0.5 ms that was about one write per exchange at the
# benchmark's paced rate; every 5 ms the proxy spends ~10 % less CPU per shadowed request, and
# the burst a batch brings is spread by the dispatcher's in-flight limit (proxy.shadow.in_flight).
FLUSH_EVERY_S = 0.005
BATCH_EXCHANGES = 512
BATCH_BYTES = 16 << 20          # bodies held in one batch: the worker's memory bound
SOCKET_BUFFER_BYTES = 32 << 20  # written but not yet read by the shadow process
RECONNECT_EVERY_S = 0.2
FRAME = struct.Struct("!I")     # length prefix of one batch
SHEDDING, ACCEPTING = b"\x01", b"\x00"   # what the shadow process says about its queue
MAX_DECISIONS = 4096            # decisions numbered per connection before both sides start over


class _Link(asyncio.Protocol):
    def __init__(self, sink: "RelaySink") -> None:
        self.sink = sink

    def data_received(self, data: bytes) -> None:
        self.sink._shedding = data[-1:] == SHEDDING   # the shadow process's latest word

    def connection_lost(self, exc: Exception | None) -> None:
        self.sink._transport = None


class RelaySink:
    """Implements proxy.exchange.ShadowSink (plus `admit`) for one worker process."""

    def __init__(self, path: str, metrics: Metrics,
                 shed_busy_share: float = saturation.SHED_BUSY_SHARE) -> None:
        self.path = path
        self.metrics = metrics
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.WriteTransport | None = None
        self._batch: list[tuple] = []
        self._bytes = 0
        self._counts: dict[tuple[str, str, str], int] = {}   # (capability, route, name) -> n
        self._refs: dict[Decision, int] = {}   # decisions the shadow process has, by number
        self._new: list[tuple[int, Decision]] = []
        self._reset = False
        self._shedding = False     # the shadow process's queue is full: drop here, before capture
        self._saturated = False    # this worker's loop is: drop here too
        self._flush: asyncio.TimerHandle | None = None
        self._connector = self._loop.create_task(self._connect())
        self._watcher = self._loop.create_task(saturation.watch(shed_busy_share, self._saturation))

    def _saturation(self, saturated: bool) -> None:
        self._saturated = saturated

    async def _connect(self) -> None:
        """Keep a connection to the shadow process (it may start after us or be restarted)."""
        while True:
            if self._transport is None:
                try:
                    transport, _ = await self._loop.create_unix_connection(
                        lambda: _Link(self), self.path)
                    self._transport = transport  # type: ignore[assignment]
                    self._refs, self._new, self._reset = {}, [], False
                    self._shedding = False
                    if self._counts:
                        self._schedule()
                except OSError:
                    pass
            await asyncio.sleep(RECONNECT_EVERY_S)

    # ---- the ShadowSink contract ---------------------------------------------------------
    def admit(self, decision: Decision) -> bool:
        """Whether an exchange would be taken now; when not, it is counted as dropped, so the
        engine does not capture bodies for nothing."""
        if self._transport is None:
            self._drop(decision, "not-running")
            return False
        if self._saturated:
            self._drop(decision, "overload")
            return False
        if (self._shedding or len(self._batch) >= BATCH_EXCHANGES
                or self._bytes >= BATCH_BYTES):
            self._drop(decision, "queue-full")
            return False
        return True

    def submit_capture(self, capture: Capture) -> None:
        decision = capture.decision
        size = capture.body_bytes()
        if self._transport is None:
            self._drop(decision, "not-running")
            return
        if (self._shedding or len(self._batch) >= BATCH_EXCHANGES
                or self._bytes + size > BATCH_BYTES):
            self._drop(decision, "queue-full")
            return
        ref = self._refs.get(decision)
        if ref is None:
            if len(self._refs) >= MAX_DECISIONS:   # e.g. many reloads: start over
                if self._flush is not None:        # what is batched goes by the old numbers
                    self._flush.cancel()
                    self._send()
                self._refs, self._new, self._reset = {}, [], True
            ref = self._refs[decision] = len(self._refs)
            self._new.append((ref, decision))
        self._batch.append((ref, *capture[1:], decision))
        self._bytes += size
        self._schedule()

    def skip(self, decision: Decision, reason: str) -> None:
        self.metrics.inc("strangler_shadow_skipped_total",
                         {"capability": decision.capability or "-", "reason": reason})
        self._count(decision, f"skipped:{reason}")

    # ---- batching ------------------------------------------------------------------------
    def _drop(self, decision: Decision, reason: str) -> None:
        self.metrics.inc("strangler_shadow_dropped_total",
                         {"capability": decision.capability or "-", "reason": reason})
        self._count(decision, f"dropped:{reason}")

    def _count(self, decision: Decision, name: str) -> None:
        key = (decision.capability or "-", decision.route, name)
        self._counts[key] = self._counts.get(key, 0) + 1
        if self._transport is not None:
            self._schedule()

    def _schedule(self) -> None:
        if self._flush is None:
            self._flush = self._loop.call_later(FLUSH_EVERY_S, self._send)

    def _send(self) -> None:
        self._flush = None
        batch, counts = self._batch, self._counts
        self._batch, self._bytes, self._counts = [], 0, {}
        transport = self._transport
        if transport is None:       # counts wait for the reconnection (bounded: keys, not events)
            self._counts = counts
            for item in batch:
                self._drop(item[-1], "not-running")
            return
        if batch and transport.get_write_buffer_size() > SOCKET_BUFFER_BYTES:
            for item in batch:      # the shadow process is behind: shed, send the counts only
                self._drop(item[-1], "queue-full")
            for key, n in self._counts.items():
                counts[key] = counts.get(key, 0) + n
            batch, self._counts = [], {}
        if not batch and not counts and not self._new:
            return
        exchanges = [item[:-1] for item in batch]   # without the decision: its number says it
        payload = pickle.dumps((self._reset, self._new, exchanges, counts),
                               pickle.HIGHEST_PROTOCOL)
        self._new, self._reset = [], False
        transport.write(FRAME.pack(len(payload)) + payload)

    async def close(self) -> None:
        """Send what is batched, then disconnect."""
        self._connector.cancel()
        self._watcher.cancel()
        if self._flush is not None:
            self._flush.cancel()
            self._send()
        if self._transport is not None:
            self._transport.close()


def make_relay_sink(path: str, metrics: Metrics) -> Any:
    return RelaySink(path, metrics)
