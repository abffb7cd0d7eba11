"""The fan-out benchmark's figures: one row per configuration, printed as plain tables."""

from __future__ import annotations

import os
import platform
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any


@dataclass
class Row:
    """The figures of one (configuration, subscribers, subscription); times in seconds."""

    layer: str  # the configuration: embedded, pubsub-1p, ...
    processes: int
    subscribers: int
    kind: str  # sourceEvents, dataLibrary, or mixed: 100 distinct operations
    clients: int  # client processes holding the subscribers
    rss_before_kib: int = 0  # all server processes, before the subscribers connect
    rss_idle_kib: int = 0  # with the N subscribers connected, before the rounds
    frame_bytes: float = 0.0  # mean size of a result frame
    ceiling_from_send: float = 0.0  # the bare app's send>last, same sockets and frame size
    ceiling_cpu_per_subscriber: float = 0.0
    open_seconds: float = 0.0
    last_median: float = 0.0
    last_max: float = 0.0
    first_median: float = 0.0
    p50_median: float = 0.0
    mutation_http: float = 0.0
    last_from_send: float = 0.0
    last_from_send_max: float = 0.0
    queries_total: float = 0.0  # per event, all server processes together
    queries_mutation: float = 0.0
    queries_background: float = 0.0
    server_cpu: float = 0.0  # per event
    server_cpu_mutation: float = 0.0  # per event with no subscriber
    client_cpu: float = 0.0
    redis_cpu: float = 0.0
    other_cpu: float = 0.0  # the rest of the machine: PostgreSQL, this script, other people's work
    missing: int = 0
    duplicates: int = 0
    stale: int = 0
    differ: int = 0  # (operation, change) pairs whose subscribers did not all get the same result
    problems: list[str] = field(default_factory=list)
    statements: Counter[str] = field(default_factory=Counter)  # per event, during the rounds

    @property
    def queries_fanout(self) -> float:
        return self.queries_total - self.queries_mutation - self.queries_background

    @property
    def fanout_cpu_per_subscriber(self) -> float:
        return (self.server_cpu - self.server_cpu_mutation) / self.subscribers

    @property
    def label(self) -> str:
        return f"{self.layer} N={self.subscribers} {self.kind}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def ratio(ours: float, ceiling: float) -> str:
    return f"{ours / ceiling:.1f}" if ceiling > 0 else "-"


# (heading, what it means, value)
COLUMNS: tuple[tuple[str, str, Callable[[Row], str]], ...] = (
    (
        "config",
        "embedded (SQLite, in-memory layer), pubsub-Np/core-Np: PostgreSQL + Redis, N processes",
        lambda r: r.layer,
    ),
    ("N", "subscribers, one WebSocket and one subscription each", lambda r: str(r.subscribers)),
    ("subscription", "what each subscriber runs; mixed: 100 distinct operations", lambda r: r.kind),
    ("clients", "client processes holding the subscribers (one asyncio loop each)", lambda r: str(r.clients)),
    ("open s", "seconds to open the N sockets until every subscription runs", lambda r: f"{r.open_seconds:.1f}"),
    (
        "open/s",
        "sockets opened per second, each until it has a result",
        lambda r: f"{r.subscribers / r.open_seconds:.0f}" if r.open_seconds else "-",
    ),
    (
        "KiB/conn",
        "server memory (RSS, all processes) per connection at rest: (idle - before) / N",
        lambda r: f"{(r.rss_idle_kib - r.rss_before_kib) / r.subscribers:.0f}",
    ),
    (
        "last med",
        "ms from the mutation's HTTP response to the LAST subscriber's result, median of rounds",
        lambda r: ms(r.last_median),
    ),
    ("last max", "the same, worst round", lambda r: ms(r.last_max)),
    (
        "first med",
        "ms from the response to the first subscriber's result (median of rounds)",
        lambda r: ms(r.first_median),
    ),
    (
        "p50 med",
        "ms from the response to the median subscriber's result (median of rounds)",
        lambda r: ms(r.p50_median),
    ),
    ("mut ms", "the mutation's HTTP round trip, request sent to response (median)", lambda r: ms(r.mutation_http)),
    (
        "send>last",
        "ms from SENDING the mutation to the last subscriber's result (median)",
        lambda r: ms(r.last_from_send),
    ),
    ("s>l max", "the same, worst round", lambda r: ms(r.last_from_send_max)),
    ("q/event", "SQL queries per change, all server processes", lambda r: f"{r.queries_total:.1f}"),
    ("q mut", "of which the mutation itself (measured with no subscriber)", lambda r: f"{r.queries_mutation:.1f}"),
    (
        "q bg",
        "of which time-based work, e.g. periodic checks (idle rate x round length)",
        lambda r: f"{r.queries_background:.1f}",
    ),
    (
        "q fanout",
        "the rest: what delivering the change to the N subscribers costs",
        lambda r: f"{r.queries_fanout:.1f}",
    ),
    ("srv cpu", "CPU ms per change used by all server processes", lambda r: ms(r.server_cpu)),
    ("mut cpu", "of which the mutation itself (measured with no subscriber)", lambda r: ms(r.server_cpu_mutation)),
    (
        "us/sub",
        "the rest per subscriber: server CPU microseconds the fan-out spends on each subscriber",
        lambda r: f"{r.fanout_cpu_per_subscriber * 1e6:.0f}",
    ),
    ("cli cpu", "CPU ms per change used by all client processes", lambda r: ms(r.client_cpu)),
    ("redis", "CPU ms per change used by Redis", lambda r: ms(r.redis_cpu)),
    (
        "other",
        "CPU ms per change used by everything else on the machine (PostgreSQL, this script, others' work)",
        lambda r: ms(r.other_cpu),
    ),
    ("lost", "(subscriber, round) results never received within the round timeout", lambda r: str(r.missing)),
    ("dup", "results received twice", lambda r: str(r.duplicates)),
    ("stale", "results showing an older state than the last change sent before them", lambda r: str(r.stale)),
    ("differ", "(operation, change) whose subscribers got different results", lambda r: str(r.differ)),
    (
        "frame B",
        "mean size of a result frame, bytes (the ceiling sends frames of this size)",
        lambda r: f"{r.frame_bytes:.0f}",
    ),
    (
        "ceil s>l",
        "CEILING: send>last of a bare daphne app writing one frame per socket from one loop, same sockets",
        lambda r: ms(r.ceiling_from_send),
    ),
    ("x s>l", "ours / ceiling, send>last (goal: 2 or less)", lambda r: ratio(r.last_from_send, r.ceiling_from_send)),
    (
        "ceil us",
        "the ceiling's server CPU microseconds per subscriber per change",
        lambda r: f"{r.ceiling_cpu_per_subscriber * 1e6:.0f}",
    ),
    (
        "x us",
        "ours / ceiling, CPU per subscriber (goal: 2 or less)",
        lambda r: ratio(r.fanout_cpu_per_subscriber, r.ceiling_cpu_per_subscriber),
    ),
)

_NUMBERS = re.compile(r"\d+")
Columns = Sequence[tuple[str, str, Callable[[Any], str]]]


def table(rows: Sequence[Any], columns: Columns = COLUMNS) -> str:
    cells = [[heading for heading, _, _ in columns]] + [[value(row) for _, _, value in columns] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(columns))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in cells)


def legend(columns: Columns) -> str:
    return "\n".join(f"  {heading:>9}: {meaning}" for heading, meaning, _ in columns)


def print_report(
    rows: list[Row],
    findings: list[str],
    *,
    command: str,
    services: str,
    load: tuple[float, float],
    show_queries: bool,
    tables: Sequence[tuple[str, Sequence[Any], Columns]] = (),
    failures: Sequence[str] = (),
) -> None:
    """Print the main table, then each of `tables` (title, rows, columns), the legends and problems."""
    packages = ("Django", "daphne", "channels", "channels-redis", "strawberry-graphql", "websockets")
    print("Fan-out benchmark: one change, N subscribers, P server processes")
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print(f"load average (1 min): {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    print(f"services: {services}; " + ", ".join(f"{name} {version(name)}" for name in packages))
    print(
        "servers: project.serve (daphne) serving benchmarks.instrumented:application (the service and a query "
        "counter) in production mode over HTTP; ACCESS_RECHECK_SECONDS=86400: at the default (60) each socket "
        "re-checks its token every minute, N/60 checks a second unrelated to changes; changes go through process 1"
    )
    print(f"reproduce: {command}")
    print()
    if rows:
        print(table(rows))
        print()
        print(legend(COLUMNS[3:]))
    for title, extra_rows, columns in tables:
        if extra_rows:
            print(f"\n{title}\n")
            print(table(extra_rows, columns))
            print()
            print(legend(columns[2:]))
    if show_queries:
        for row in rows:
            print(f"\n{row.label}: SQL statements per change besides the mutation's own")
            for statement, per_event in row.statements.most_common():
                if abs(per_event) >= 0.005:
                    print(f"  {per_event:7.2f}  {statement}")
    problems = list(failures)
    problems += [f"{row.label}: {problem}" for row in rows for problem in row.problems]
    problems += [f"{row.label}: {p}" for _, extra_rows, _ in tables for row in extra_rows for p in row.problems]
    print("\nproblems seen by the benchmark: " + ("none" if not problems else ""))
    for problem in problems[:30]:
        print(f"  {problem}")
    print("server logs (errors, warnings, capacity messages): " + ("none" if not findings else ""))
    # Lines that differ only by numbers (task ids, ports, times) are counted as one.
    for line, times in Counter(_NUMBERS.sub("#", line) for line in findings).most_common(20):
        print(f"  {times} x {line[:300]}")
