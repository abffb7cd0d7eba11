"""Measure how fast, at what SQL, CPU and memory cost, one change reaches N live subscribers.

For each configuration (`embedded`: SQLite and the in-memory layer, one process; `pubsub-1p`,
`pubsub-2p`, `core-1p`, `core-2p`: PostgreSQL and a channels-redis layer on 1 or 2 processes),
number of subscribers N and subscription (identical `sourceEvents`, identical `dataLibrary`, or
`mixed`: 100 distinct operations, benchmarks/operations.py), the script opens N WebSocket
subscribers (graphql-transport-ws, an API token in connection_init) split evenly over the
processes, then makes R changes one after the other: an `updateSource` mutation over HTTP to
process 1 writes a new marker into a demo source's scopeOfSubscription. For each change:

- delay = (when the last of the N subscribers received the change's result) - (when the
  mutation's HTTP response arrived); also the first subscriber's and the median one's, and the
  time from *sending* the mutation (the response itself can wait behind the fan-out on
  process 1). A row gives the median and the maximum over the R rounds.
- SQL queries: each server process counts the queries it runs (benchmarks/instrumented.py).
  Per change = (count after the rounds - count before) / R, split into the mutation's own
  (measured with no subscriber connected), time-based work (the rate measured during a quiet
  spell with the subscribers connected, times the rounds' length) and the fan-out's: the rest.
- the opening rate (N / seconds until every subscriber runs), and server memory (RSS, summed
  over the processes) per connection at rest.
- the CEILING: the same N sockets, with the same client code, on a bare daphne app
  (benchmarks/ceiling.py) that writes one frame of the same size to every socket from one loop
  when an HTTP POST stands in for the mutation; ours/ceiling for send>last and CPU per
  subscriber (the goal is 2 or less).

Then a memory row (benchmarks/memory.py: RSS before and after many changes to many
subscribers) and a reconnect-storm row (benchmarks/storm.py: many sockets at once against a
long change log), on the configurations --memory-configs and --storm-configs name (pubsub-1p by
default: 10,000 changes take long even at the goal's speed). Each configuration gets a new
database (PostgreSQL: the one named by --database-url, dropped and made again; embedded: a new
SQLite file) with the demo data, and each row servers of its own.

Results are matched by content (benchmarks/operations.py): a result carrying the changed
source's scopeOfSubscription is filed under that marker; a dataLibrary result under the last
change sent before it was computed (its generatedAt). No round starts before every subscriber
is running: each has received a result (repeated warm-up changes for sourceEvents, which sends
nothing at first), then one more warm-up change that all of them must receive.

The subscribers live in client processes (benchmarks/subscribers.py, one asyncio loop each, one
per 500 subscribers by default) so that one loop parsing a thousand frames per change does not
become what is measured. They still share the machine's CPUs with the servers, Redis and
PostgreSQL: the CPU columns say who used what, and `other` how much the rest of the machine
(other people's work) took meanwhile. A row that fails (too slow, refused sockets) is reported
as a failure with its reason, and the run goes on.

Usage (from the project root):

    .venv/bin/python benchmarks/fanout.py --quick        # a smoke run: about a minute per configuration
    .venv/bin/python benchmarks/fanout.py                # the whole matrix (hours on today's code)
    .venv/bin/python benchmarks/fanout.py --configs pubsub-1p --subscribers 1000 --operations mixed
    .venv/bin/python benchmarks/fanout.py --help
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

# Run as a script (benchmarks/fanout.py): make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import memory, stack, storm
from benchmarks.fanout_row import measure, measure_ceiling
from benchmarks.operations import IDENTICAL
from benchmarks.report import Row, print_report
from benchmarks.service import CONFIGS, Bench, Config

T = TypeVar("T")


def prepare(args: argparse.Namespace, config: Config, work_dir: Path) -> tuple[dict[str, str], str]:
    """Make the configuration's database afresh; return the servers' environment and a token."""
    if config.embedded:
        args.sqlite_path = str(work_dir / f"{config.name}.sqlite3")
        env = stack.service_env("", "", "", sqlite_path=args.sqlite_path)
    else:
        stack.reset_database(args.database_url)
        env = stack.service_env(args.database_url, args.redis_url, config.layer or "")
    stack.flush_redis(args.redis_url)  # no group members left over from stopped servers
    progress(f"{config.name}: preparing the database (migrate, demo data, user, token) ...")
    return env, stack.prepare_database(env)


def run_config(args: argparse.Namespace, config: Config, work_dir: Path, report: Report) -> None:
    """Measure every row of one configuration into `report`, each on servers of its own.

    New servers for each row: a process keeps the memory it once used (RSS seldom shrinks), so
    a row after another would show the earlier row's peak as its "before".
    """
    env, token = prepare(args, config, work_dir)

    @contextlib.contextmanager
    def serving(label: str) -> Iterator[Bench]:
        servers: list[stack.Server] = []
        try:
            with stack.servers(config.processes, env, work_dir, f"{config.name}-{label}") as servers:
                yield Bench(args, config, servers, token)
        finally:
            for server in servers:
                report.findings += [f"{server.log.name}: {line}" for line in stack.log_findings(server.log)]

    kinds = args.kinds if "identical" in args.operations else []
    kinds = kinds + (["mixed"] if "mixed" in args.operations else [])
    for count in args.subscribers if "fanout" in args.rows else []:
        for kind in kinds:
            progress(f"{config.name}: {count} {kind} subscribers ...")
            with serving(f"{count}-{kind}") as bench:
                mutation = bench.mutation_cost()
                row = attempt(report, f"{config.name} N={count} {kind}", measure, bench, count, kind, mutation)
            if row is not None:
                progress(f"  send>last {row.last_from_send * 1000:.1f} ms (median); ceiling ...")
                attempt(report, f"{row.label} ceiling", measure_ceiling, args, row, work_dir)
                progress(f"  ceiling send>last {row.ceiling_from_send * 1000:.1f} ms")
                report.rows.append(row)
    if "memory" in args.rows and config.name in args.memory_configs:
        progress(f"{config.name}: memory, {args.memory_changes} changes to {args.memory_subscribers} ...")
        memory_args = (args.memory_subscribers, args.memory_changes, args.memory_writers, args.memory_timeout)
        with serving("memory") as bench:
            if found := attempt(report, f"{config.name} memory", memory.measure, bench, *memory_args):
                report.memory.append(found)
                progress(f"  {found}")
    if "storm" in args.rows and config.name in args.storm_configs:  # last: it lengthens the log for good
        progress(f"{config.name}: storm, {args.storm_sockets} sockets, {args.storm_log_events} events ...")
        storm_args = (args.storm_sockets, args.storm_log_events, args.storm_attempts, args.storm_timeout)
        with serving("storm") as bench:
            if found := attempt(report, f"{config.name} storm", storm.measure, bench, *storm_args):
                report.storms.append(found)
                progress(f"  {found}")


def attempt(report: Report, label: str, function: Callable[..., T], *arguments: Any) -> T | None:
    """Return `function(*arguments)`; None if it failed, the failure noted in `report`: the run goes on."""
    try:
        return function(*arguments)
    except (SystemExit, Exception) as failure:  # a row that cannot finish is a finding
        report.failures.append(f"{label}: FAILED: {failure!r}"[:600])
        progress(f"  FAILED: {failure!r}"[:600])
        return None


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    memory: list[memory.MemoryRow] = field(default_factory=list)
    storms: list[storm.StormRow] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def progress(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def reproduce(args: argparse.Namespace) -> str:
    """Return the command that runs this benchmark again with the same settings, defaults spelt out."""
    argv = [".venv/bin/python", "benchmarks/fanout.py", f"--configs={','.join(args.configs)}"]
    argv += [f"--rows={','.join(args.rows)}", f"--operations={','.join(args.operations)}"]
    argv += [f"--kinds={','.join(args.kinds)}", f"--subscribers={','.join(map(str, args.subscribers))}"]
    argv += [f"--rounds={args.rounds}", f"--pause={args.pause}", f"--idle-seconds={args.idle_seconds}"]
    argv += [f"--round-timeout={args.round_timeout}", f"--ready-timeout={args.ready_timeout}"]
    argv += [f"--memory-configs={','.join(args.memory_configs)}", f"--storm-configs={','.join(args.storm_configs)}"]
    argv += [f"--memory-subscribers={args.memory_subscribers}", f"--memory-changes={args.memory_changes}"]
    argv += [f"--memory-writers={args.memory_writers}", f"--memory-timeout={args.memory_timeout}"]
    argv += [f"--storm-sockets={args.storm_sockets}", f"--storm-log-events={args.storm_log_events}"]
    argv += [f"--storm-attempts={args.storm_attempts}", f"--storm-timeout={args.storm_timeout}"]
    if args.client_processes:
        argv.append(f"--client-processes={args.client_processes}")
    else:
        argv += [f"--subscribers-per-client={args.subscribers_per_client}"]
        argv += [f"--max-client-processes={args.max_client_processes}"]
    argv += [f"--database-url={args.database_url}", f"--redis-url={args.redis_url}"]
    return f"cd {stack.ROOT} && " + " ".join(shlex.quote(arg) for arg in argv)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def names(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


QUICK = {  # --quick: a smoke run of every row, about a minute per configuration
    "subscribers": [100],
    "memory_configs": list(CONFIGS),
    "storm_configs": list(CONFIGS),
    "rounds": 3,
    "idle_seconds": 1.0,
    "memory_subscribers": 20,
    "memory_changes": 200,
    "storm_sockets": 100,
    "storm_log_events": 2000,
    "storm_timeout": 30.0,
}


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--configs", type=names, default=["embedded", "pubsub-1p", "pubsub-2p"], help=f"of {list(CONFIGS)}")
    add("--rows", type=names, default=["fanout", "memory", "storm"], help="which rows: fanout, memory, storm")
    add("--operations", type=names, default=["identical", "mixed"], help="identical (--kinds) and/or mixed")
    add("--kinds", type=names, default=list(IDENTICAL), help="subscriptions of the identical rows")
    add("--subscribers", type=numbers, default=[1000, 5000], help="subscribers N, comma-separated")
    add("--rounds", type=int, default=20, help="changes measured per row")
    add("--pause", type=float, default=0.1, help="seconds between rounds")
    add("--idle-seconds", type=float, default=6, help="quiet spell that rates time-based queries")
    add("--round-timeout", type=float, default=60, help="seconds a round may take")
    add("--ready-timeout", type=float, default=300, help="seconds for all subscriptions to run")
    add("--memory-configs", type=names, default=["pubsub-1p"], help="configurations that get a memory row")
    add("--storm-configs", type=names, default=["pubsub-1p"], help="configurations that get a storm row")
    add("--memory-subscribers", type=int, default=1000, help="sourceEvents subscribers of the memory row")
    add("--memory-changes", type=int, default=10_000, help="changes the memory row makes")
    add("--memory-writers", type=int, default=4, help="concurrent writers of those changes")
    add("--memory-timeout", type=float, default=1200, help="seconds the memory row waits for every result")
    add("--storm-sockets", type=int, default=1000, help="sockets opened at once by the storm row")
    add("--storm-log-events", type=int, default=100_000, help="the change log's length for the storm")
    add("--storm-attempts", type=int, default=3, help="attempts per storm socket")
    add("--storm-timeout", type=float, default=60, help="seconds one storm attempt may take")
    add("--client-processes", type=int, default=0, help="client processes (0: see the next two)")
    add("--subscribers-per-client", type=int, default=500, help="one client process per this many")
    add("--max-client-processes", type=int, default=8, help="but no more than this many")
    add("--database-url", default="postgres://postgres@127.0.0.1:5432/bench", help="dropped, made")
    add("--redis-url", default="redis://127.0.0.1:6379/12", help="its database is emptied")
    add("--keep-database", action="store_true", help="do not drop the database at the end")
    add("--show-queries", action="store_true", help="print the SQL statements each change costs")
    add("--quick", action="store_true", help=f"a smoke run: {QUICK}, unless given")
    args = parser.parse_args()
    if args.quick:
        given = {arg.split("=")[0].lstrip("-").replace("-", "_") for arg in sys.argv[1:] if arg.startswith("--")}
        for name, value in QUICK.items():
            if name not in given:
                setattr(args, name, value)
    for option, chosen, known in (
        ("--configs", args.configs, CONFIGS),
        ("--memory-configs", args.memory_configs, CONFIGS),
        ("--storm-configs", args.storm_configs, CONFIGS),
        ("--rows", args.rows, ("fanout", "memory", "storm")),
        ("--operations", args.operations, ("identical", "mixed")),
        ("--kinds", args.kinds, IDENTICAL),
    ):
        if unknown := set(chosen) - set(known):
            parser.error(f"unknown {option} {sorted(unknown)}; choose from {list(known)}")
    return args


def main() -> None:
    args = arguments()
    load_before = os.getloadavg()[0]  # others' work on the machine shows in the delays
    # Thousands of sockets on each side; the servers and client processes inherit the limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    work_dir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    progress(f"server logs and SQLite files in {work_dir}; file descriptors: {hard}")
    report = Report()
    uses_postgres = any(not CONFIGS[name].embedded for name in args.configs)
    try:
        for name in args.configs:
            run_config(args, CONFIGS[name], work_dir, report)
        services = f"PostgreSQL {stack.database_version(args.database_url)}" if uses_postgres else "SQLite"
        services += f", Redis {stack.redis_version(args.redis_url)}" if uses_postgres else ""
    finally:
        if uses_postgres and not args.keep_database:
            stack.drop_database(args.database_url)
        stack.flush_redis(args.redis_url)
    print_report(
        report.rows,
        report.findings,
        command=reproduce(args) + (" --quick" if args.quick else ""),
        services=services,
        load=(load_before, os.getloadavg()[0]),
        show_queries=args.show_queries,
        tables=(
            (
                "memory: server RSS before and after many changes to sourceEvents subscribers",
                report.memory,
                memory.COLUMNS,
            ),
            (
                "reconnect storm: every socket opened at once, each subscribing to dataLibrary",
                report.storms,
                storm.COLUMNS,
            ),
        ),
        failures=report.failures,
    )


if __name__ == "__main__":
    main()
