"""The fan-out benchmark's reconnect-storm row: many sockets at once against a long change log.

The log is first filled to L events with bulk SQL (what a long-lived deployment has): copies of
the demo sources' latest snapshots, spread over the data library's window, numbered on from the
last change with `catalog_eventsequence.last` moved along, versions far above the sources' own
so that later changes never collide with them. Then S sockets are opened all at once (what a
deploy causes: every client reconnecting), each subscribing to `dataLibrary` with the token.
A socket that fails (refused, closed, no first result within the attempt's timeout) tries
again, up to three attempts in all.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from benchmarks.operations import IDENTICAL
from benchmarks.service import Bench, client_processes, plans
from benchmarks.subscribers import Clients

KINDS = ("UPDATED",) * 8 + ("DEACTIVATED", "REACTIVATED")
FAR_VERSION = 1_000_000  # filler versions start here: never a version a source reaches in a run


@dataclass
class StormRow:
    layer: str
    sockets: int
    log_events: int
    attempts: int
    seconds: float = 0.0  # from all connects started to the last first result (or the end)
    served: int = 0
    failed_attempts: int = 0
    listen_overflows: int = 0  # the machine's, during the storm: connections the backlog had no room for
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.layer} storm S={self.sockets} log={self.log_events}"


COLUMNS = (
    ("config", "", lambda r: r.layer),
    ("sockets", "", lambda r: str(r.sockets)),
    ("log events", "events in the change log (catalog_sourceevent rows)", lambda r: str(r.log_events)),
    (
        "all served s",
        "seconds from every connect started at once to the last first result (goal: 5)",
        lambda r: f"{r.seconds:.1f}",
    ),
    (
        "failed tries",
        "attempts that failed (refused, closed, timed out), retried up to the attempts",
        lambda r: str(r.failed_attempts),
    ),
    ("never served", "sockets with no first result after every attempt (goal: 0)", lambda r: str(r.sockets - r.served)),
    (
        "backlog full",
        "times a listen backlog overflowed meanwhile (TcpExt ListenOverflows, the whole machine's)",
        lambda r: str(r.listen_overflows),
    ),
)


def _filler(latest: list[tuple[str, Any]], last: int, count: int) -> list[tuple[Any, ...]]:
    now = datetime.now(UTC)
    window = timedelta(days=29)
    return [
        (
            last + n,
            latest[n % len(latest)][0],
            KINDS[n % len(KINDS)],
            FAR_VERSION + n,
            now - window * (1 - n / count),
            "bench",
            latest[n % len(latest)][1],
        )
        for n in range(1, count + 1)
    ]


def fill_postgres(database_url: str, target: int) -> int:
    """Add log events until the log holds `target`; return how many it holds."""
    with psycopg.connect(database_url.replace("postgres://", "postgresql://", 1)) as connection:
        last = connection.execute("SELECT last FROM catalog_eventsequence WHERE id = 1 FOR UPDATE").fetchone()[0]
        have = connection.execute("SELECT count(*) FROM catalog_sourceevent").fetchone()[0]
        if have >= target:
            return have
        latest = connection.execute(
            "SELECT DISTINCT ON (source_id) source_id, snapshot::text FROM catalog_sourceevent "
            "WHERE snapshot IS NOT NULL ORDER BY source_id, sequence DESC"
        ).fetchall()
        rows = _filler(latest, last, target - have)
        with connection.cursor().copy(
            "COPY catalog_sourceevent (sequence, source_id, kind, version, occurred_at, actor, snapshot) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        connection.execute("UPDATE catalog_eventsequence SET last = %s WHERE id = 1", (last + len(rows),))
        connection.execute("ANALYZE catalog_sourceevent")
    return target


def fill_sqlite(path: str, target: int) -> int:
    """The same for the embedded SQLite file."""
    with sqlite3.connect(path, timeout=60) as connection:
        connection.execute("BEGIN IMMEDIATE")
        last = connection.execute("SELECT last FROM catalog_eventsequence WHERE id = 1").fetchone()[0]
        have = connection.execute("SELECT count(*) FROM catalog_sourceevent").fetchone()[0]
        if have >= target:
            return have
        latest = connection.execute(
            "SELECT source_id, snapshot FROM catalog_sourceevent e WHERE snapshot IS NOT NULL AND sequence = "
            "(SELECT max(sequence) FROM catalog_sourceevent f WHERE f.source_id = e.source_id)"
        ).fetchall()
        rows = [
            (*row[:4], row[4].replace(tzinfo=None).isoformat(sep=" "), *row[5:])  # Django's SQLite format, UTC
            for row in _filler(latest, last, target - have)
        ]
        connection.executemany(
            "INSERT INTO catalog_sourceevent (sequence, source_id, kind, version, occurred_at, actor, snapshot) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute("UPDATE catalog_eventsequence SET last = ? WHERE id = 1", (last + len(rows),))
    return target


def listen_overflows() -> int:
    """Return how often a listen queue of this machine has overflowed since boot (Linux /proc/net/netstat)."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    return int(dict(zip(lines[0], lines[1], strict=True)).get("ListenOverflows", 0))


def measure(bench: Bench, sockets: int, log_events: int, attempts: int, timeout: float) -> StormRow:
    """Fill the log, open `sockets` dataLibrary subscribers all at once; return how it went."""
    args = bench.args
    row = StormRow(bench.layer, sockets, log_events, attempts)
    if bench.config.embedded:
        row.log_events = fill_sqlite(args.sqlite_path, log_events)
    else:
        row.log_events = fill_postgres(args.database_url, log_events)
    clients = Clients(client_processes(args, sockets))
    try:
        plan = plans(bench.servers, bench.token, [IDENTICAL["dataLibrary"]], sockets, len(clients.pipes))
        overflows = listen_overflows()
        began = time.monotonic()
        answers = clients.ask([("storm", (p, attempts, timeout)) for p in plan])
        row.listen_overflows = listen_overflows() - overflows
        outcomes = [outcome for answer in answers for outcome in answer]
        served = [outcome["served"] for outcome in outcomes if outcome["served"] is not None]
        row.served = len(served)
        row.seconds = (max(served) if served else time.monotonic()) - began
        failures = [failure for outcome in outcomes for failure in outcome["failures"]]
        row.failed_attempts = len(failures)
        kinds: dict[str, int] = {}
        for failure in failures:
            kinds[failure[:80]] = kinds.get(failure[:80], 0) + 1
        row.problems += [
            f"{times} failed attempts: {kind}" for kind, times in sorted(kinds.items(), key=lambda k: -k[1])[:5]
        ]
    finally:
        clients.close()
    bench.drained(args.ready_timeout)
    return row
