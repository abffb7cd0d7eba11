"""The fan-out benchmark's figures: one row per configuration, printed as a plain table."""

from __future__ import annotations

import os
import platform
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version


@dataclass
class Row:
    """The figures of one (layer, processes, subscribers, subscription); times in seconds."""

    layer: str
    processes: int
    subscribers: int
    kind: str
    clients: int  # client processes holding the subscribers
    open_seconds: float = 0.0
    last_median: float = 0.0
    last_max: float = 0.0
    first_median: float = 0.0
    p50_median: float = 0.0
    mutation_http: float = 0.0
    last_from_send: float = 0.0
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
        return f"{self.layer} {self.processes}p N={self.subscribers} {self.kind}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


# (heading, what it means, value)
COLUMNS: tuple[tuple[str, str, Callable[[Row], str]], ...] = (
    ("layer", "channels-redis layer (REDIS_CHANNEL_LAYER)", lambda r: r.layer),
    ("procs", "daphne server processes; the subscribers are split evenly over them", lambda r: str(r.processes)),
    ("N", "subscribers, one WebSocket and one subscription each", lambda r: str(r.subscribers)),
    ("subscription", "what each subscriber runs", lambda r: r.kind),
    ("clients", "client processes holding the subscribers (one asyncio loop each)", lambda r: str(r.clients)),
    ("open s", "seconds to open the N sockets until every subscription runs", lambda r: f"{r.open_seconds:.1f}"),
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
    ("stale", "dataLibrary results computed before their change was sent", lambda r: str(r.stale)),
)


def table(rows: list[Row]) -> str:
    cells = [[heading for heading, _, _ in COLUMNS]] + [[value(row) for _, _, value in COLUMNS] for row in rows]
    widths = [max(len(line[index]) for line in cells) for index in range(len(COLUMNS))]
    return "\n".join("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)) for line in cells)


def print_report(
    rows: list[Row], findings: list[str], *, command: str, services: str, load: tuple[float, float], show_queries: bool
) -> None:
    packages = ("Django", "daphne", "channels", "channels-redis", "strawberry-graphql", "websockets")
    print("Fan-out benchmark: one change, N subscribers, P server processes")
    print(f"machine: {os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}")
    print(f"load average (1 min): {load[0]:.2f} at the start, {load[1]:.2f} at the end")
    print(f"services: {services}; " + ", ".join(f"{name} {version(name)}" for name in packages))
    print(
        "servers: daphne serving benchmarks.instrumented:application (the service and a query counter) in "
        "production mode over HTTP; ACCESS_RECHECK_SECONDS=86400: at the default (60) each socket re-checks "
        "its token every minute, N/60 checks a second unrelated to changes; changes go through process 1"
    )
    print(f"reproduce: {command}")
    print()
    print(table(rows))
    print()
    for heading, meaning, _ in COLUMNS[4:]:
        print(f"  {heading:>9}: {meaning}")
    if show_queries:
        for row in rows:
            print(f"\n{row.label}: SQL statements per change besides the mutation's own")
            for statement, per_event in row.statements.most_common():
                if abs(per_event) >= 0.005:
                    print(f"  {per_event:7.2f}  {statement}")
    problems = [f"{row.label}: {problem}" for row in rows for problem in row.problems]
    print("\nproblems seen by the benchmark: " + ("none" if not problems else ""))
    for problem in problems[:20]:
        print(f"  {problem}")
    print("server logs (errors, warnings, capacity messages): " + ("none" if not findings else ""))
    for line, times in Counter(findings).most_common(20):
        print(f"  {times} x {line}")
