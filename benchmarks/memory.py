"""The fan-out benchmark's memory row: server RSS before and after many changes to many subscribers.

N identical `sourceEvents` subscribers (each change reaches every one) are opened and warmed up;
then C changes are made quickly by several writers at once (each its own demo source, so that
they do not wait on one row lock), and the row waits until every subscriber has every change
(or the timeout). RSS is the sum of VmRSS over the server processes. A server that keeps what
it sent grows by about N x C x the result's size; one that does not stays flat.
"""

from __future__ import annotations

import concurrent.futures
import time
from dataclasses import dataclass, field

from benchmarks.operations import IDENTICAL
from benchmarks.service import Bench, client_processes, start
from benchmarks.subscribers import Clients

SETTLE_SECONDS = 3  # after the last result, for buffers written and freed to be counted as they end


@dataclass
class MemoryRow:
    layer: str
    subscribers: int
    changes: int
    writers: int
    rss_before_kib: int = 0  # the subscribers connected and warm, before the changes
    rss_after_kib: int = 0
    seconds: float = 0.0  # from the first change sent to the last result received
    received: int = 0
    expected: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.layer} memory N={self.subscribers} C={self.changes}"

    @property
    def growth(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.rss_before_kib if self.rss_before_kib else 0.0

    @property
    def per_subscriber_change(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / (self.subscribers * self.changes)


COLUMNS = (
    ("config", "", lambda r: r.layer),
    ("N", "", lambda r: str(r.subscribers)),
    ("changes", "changes made, by `writers` concurrent writers (updateSource over HTTP)", lambda r: str(r.changes)),
    ("writers", "concurrent writers", lambda r: str(r.writers)),
    (
        "rss before MB",
        "server RSS (all processes) with the N subscribers connected, before the changes",
        lambda r: f"{r.rss_before_kib / 1024:.0f}",
    ),
    (
        "rss after MB",
        "the same once every result was received (or the timeout)",
        lambda r: f"{r.rss_after_kib / 1024:.0f}",
    ),
    ("growth %", "(after - before) / before (goal: within 10)", lambda r: f"{r.growth * 100:.0f}"),
    ("KiB/sub/chg", "(after - before) / (N x changes) (goal: 0)", lambda r: f"{r.per_subscriber_change:.2f}"),
    ("seconds", "from the first change sent to the last result", lambda r: f"{r.seconds:.0f}"),
    (
        "received %",
        "results received of N x changes",
        lambda r: f"{100 * r.received / r.expected:.1f}" if r.expected else "-",
    ),
)


def measure(bench: Bench, count: int, changes: int, writers: int, timeout: float) -> MemoryRow:
    """Open `count` sourceEvents subscribers, make `changes` changes quickly, return the memory figures."""
    row = MemoryRow(bench.layer, count, changes, writers)
    clients = Clients(client_processes(bench.args, count))
    try:
        start(bench, clients, [IDENTICAL["sourceEvents"]], count)
        received_before = sum(clients.ask_all("results"))
        row.rss_before_kib = bench.rss_kib()
        sources = [s["id"] for s in bench.sources if s["id"] != bench.source_id][:writers] or [bench.source_id]
        began = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(len(sources)) as pool:
            shares = [changes // len(sources) + (i < changes % len(sources)) for i in range(len(sources))]
            done = pool.map(
                lambda job: [bench.change(source_id=job[0]) for _ in range(job[1])], zip(sources, shares, strict=True)
            )
            list(done)
        row.expected = count * changes
        deadline = time.monotonic() + timeout
        while True:
            row.received = sum(clients.ask_all("results")) - received_before
            if row.received >= row.expected:
                break
            if time.monotonic() > deadline:
                row.problems.append(f"only {row.received} of {row.expected} results within {timeout:.0f} s")
                break
            time.sleep(1)  # polling the clients' counts, with a deadline
        row.seconds = time.monotonic() - began
        time.sleep(SETTLE_SECONDS)
        row.rss_after_kib = bench.rss_kib()
        for answer in clients.ask_all("stats"):
            row.problems += answer["problems"]
    finally:
        clients.close()
    bench.drained(bench.args.ready_timeout)
    return row
