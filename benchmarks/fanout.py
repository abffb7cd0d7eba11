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

Then, per configuration, a memory row (benchmarks/memory.py: RSS before and after many changes
to many subscribers) and a reconnect-storm row (benchmarks/storm.py: many sockets at once
against a long change log). Each configuration gets a new database (PostgreSQL: the one named
by --database-url, dropped and made again; embedded: a new SQLite file) with the demo data.

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
    .venv/bin/python benchmarks/fanout.py                # the whole matrix
    .venv/bin/python benchmarks/fanout.py --configs pubsub-1p --subscribers 1000 --operations mixed
    .venv/bin/python benchmarks/fanout.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script (benchmarks/fanout.py): make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import memory, stack, storm
from benchmarks.operations import CEILING, IDENTICAL, Operation, mixed
from benchmarks.report import Row, print_report
from benchmarks.service import CONFIGS, Bench, Config, client_processes, plans, start
from benchmarks.subscribers import Clients

CEILING_ROUNDS = 10
Change = Callable[[], tuple[int, str, float, float]]


@dataclass
class Rounds:
    """What R rounds of change-then-wait gave: per round, times in seconds."""

    lasts: list[float] = field(default_factory=list)  # response -> last result
    firsts: list[float] = field(default_factory=list)
    p50s: list[float] = field(default_factory=list)
    http: list[float] = field(default_factory=list)
    from_send: list[float] = field(default_factory=list)  # request sent -> last result
    missing: int = 0


def run_rounds(change: Change, clients: Clients, rounds: int, timeout: float, pause: float) -> Rounds:
    """Make `rounds` changes, each once every subscriber has the previous one (or the timeout)."""
    figures = Rounds()
    for _ in range(rounds):
        index, marker, sent, answered = change()
        answers = clients.ask_all("wait", (index, marker, timeout))
        times = sorted(t for answer in answers for t in answer["times"])
        figures.missing += sum(answer["missing"] for answer in answers)
        figures.http.append(answered - sent)
        if times:
            figures.lasts.append(times[-1] - answered)
            figures.from_send.append(times[-1] - sent)
            figures.firsts.append(times[0] - answered)
            figures.p50s.append(statistics.median(times) - answered)
        time.sleep(pause)
    return figures


def operations_of(bench: Bench, kind: str) -> list[Operation]:
    if kind == "mixed":
        return mixed(bench.source, [s["id"] for s in bench.sources[1:]])
    return [IDENTICAL[kind]]


def measure(bench: Bench, count: int, kind: str, mutation: tuple[float, float, Counter[str]]) -> Row:
    """Open `count` subscribers of `kind`, make the changes, close them; return the figures."""
    args = bench.args
    row = Row(bench.layer, len(bench.servers), count, kind, client_processes(args, count))
    row.queries_mutation, row.server_cpu_mutation, mutation_statements = mutation
    row.rss_before_kib = bench.rss_kib()
    clients = Clients(row.clients)
    try:
        opening = time.monotonic()
        start(bench, clients, operations_of(bench, kind), count)
        row.open_seconds = time.monotonic() - opening

        # Queries that come with time, not with changes (e.g. each process's periodic
        # catch-up check): their rate over a quiet spell, taken out of the fan-out's figure.
        idle_before, _ = bench.queries()
        time.sleep(args.idle_seconds)
        idle_rate = (bench.queries()[0] - idle_before) / args.idle_seconds
        row.rss_idle_kib = bench.rss_kib()

        queries_before, statements_before = bench.queries()
        started = time.monotonic()
        cpu_before = cpu_use(bench, clients)
        figures = run_rounds(lambda: bench.change(clients), clients, args.rounds, args.round_timeout, args.pause)
        queries_after, statements_after = bench.queries()
        row.queries_background = idle_rate * (time.monotonic() - started) / args.rounds
        cpu_after = cpu_use(bench, clients)

        if not figures.lasts:
            raise SystemExit(f"{row.label}: no subscriber received any round's result")
        row.missing = figures.missing
        row.last_median, row.last_max = statistics.median(figures.lasts), max(figures.lasts)
        row.first_median, row.p50_median = statistics.median(figures.firsts), statistics.median(figures.p50s)
        row.mutation_http, row.last_from_send = statistics.median(figures.http), statistics.median(figures.from_send)
        row.queries_total = (queries_after - queries_before) / args.rounds
        row.server_cpu, row.client_cpu, row.redis_cpu, machine = (
            (after - before) / args.rounds for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        row.other_cpu = machine - row.server_cpu - row.client_cpu - row.redis_cpu
        # What a change costs beyond the mutation's own statements: the fan-out's, and time-based ones.
        row.statements = Counter({s: n / args.rounds for s, n in (statements_after - statements_before).items()})
        row.statements.subtract(mutation_statements)
        sizes = []
        for answer in clients.ask_all("stats"):
            row.duplicates += answer["duplicates"]
            row.stale += answer["stale"]
            row.problems += answer["problems"]
            sizes += answer["frame_bytes"]
            if answer["closed"]:
                row.problems.append(f"{answer['closed']} sockets were closed during the run")
        row.frame_bytes = statistics.mean(sizes) if sizes else 0.0
    finally:
        clients.close()
    if not bench.drained(args.ready_timeout):
        row.problems.append(f"servers still ran WebSocket instances {args.ready_timeout} s after the clients left")
    if not bench.config.embedded and (left := stack.group_members(args.redis_url)):
        row.problems.append(f"{left} channels stayed in channel-layer groups after every subscriber had left")
        stack.flush_redis(args.redis_url)  # the next row must not pay for this one's leftovers
    return row


def measure_ceiling(args: argparse.Namespace, row: Row, log_dir: Path) -> None:
    """Run the row's N sockets on the bare app (benchmarks/ceiling.py); note its send>last and CPU."""
    env = {key: value for key, value in os.environ.items() if key not in ("DATABASE_URL", "REDIS_URL")}
    label = f"ceiling-{row.subscribers}-{row.kind}"
    with stack.servers(1, env, log_dir, label, application=stack.CEILING_APPLICATION) as (server,):
        clients = Clients(row.clients)
        try:
            plan = plans([server], "ceiling", [CEILING], row.subscribers, len(clients.pipes))
            opened = clients.ask([("open", p) for p in plan])
            if sum(answer["opened"] for answer in opened) != row.subscribers:
                failures = [failure for answer in opened for failure in answer["failures"]]
                row.problems.append(f"ceiling: only {sum(a['opened'] for a in opened)} sockets opened: {failures[:2]}")
                return
            if not_ready := sum(clients.ask_all("ready", (1, args.ready_timeout))):
                row.problems.append(f"ceiling: {not_ready} sockets had no first frame")
                return
            changes = iter(range(1, 10**9))

            def trigger() -> tuple[int, str, float, float]:
                index = next(changes)
                marker = f"ceiling {index}"
                clients.ask_all("round", (index, marker, time.time()))
                body = json.dumps({"marker": marker, "size": round(row.frame_bytes) or 200}).encode()
                request = urllib.request.Request(f"{server.http}/trigger", data=body, method="POST")  # noqa: S310
                sent = time.monotonic()
                with urllib.request.urlopen(request, timeout=60):  # noqa: S310 (our own loopback server)
                    answered = time.monotonic()
                return index, marker, sent, answered

            trigger()  # warm-up
            clients.ask_all("wait", (1, "ceiling 1", args.round_timeout))
            cpu = stack.process_cpu_seconds(server.process.pid)
            rounds = min(args.rounds, CEILING_ROUNDS)
            figures = run_rounds(trigger, clients, rounds, args.round_timeout, args.pause)
            cpu_per_change = (stack.process_cpu_seconds(server.process.pid) - cpu) / rounds
            if figures.missing:
                row.problems.append(f"ceiling: {figures.missing} (socket, round) frames never arrived")
            if figures.from_send:
                row.ceiling_from_send = statistics.median(figures.from_send)
            row.ceiling_cpu_per_subscriber = cpu_per_change / row.subscribers
        finally:
            clients.close()


def cpu_use(bench: Bench, clients: Clients) -> tuple[float, float, float, float]:
    """Return the CPU seconds used so far by the servers, the client processes, Redis, the whole machine."""
    servers, clients_cpu = bench.server_cpu(), sum(clients.ask_all("cpu"))
    return servers, clients_cpu, stack.redis_cpu_seconds(bench.args.redis_url), stack.machine_busy_seconds()


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
    """Measure every row of one configuration into `report`."""
    env, token = prepare(args, config, work_dir)
    with stack.servers(config.processes, env, work_dir, config.name) as servers:
        bench = Bench(args, config, servers, token)
        mutation = bench.mutation_cost()
        if "fanout" in args.rows:
            for count in args.subscribers:
                for kind in args.kinds + (["mixed"] if "mixed" in args.operations else []):
                    if kind != "mixed" and "identical" not in args.operations:
                        continue
                    progress(f"{config.name}: {count} {kind} subscribers ...")
                    try:
                        row = measure(bench, count, kind, mutation)
                    except SystemExit as failure:
                        report.failures.append(f"{config.name} N={count} {kind}: FAILED: {failure}")
                        progress(f"  FAILED: {failure}")
                        bench.drained(args.ready_timeout)
                        continue
                    progress(f"  send>last {row.last_from_send * 1000:.1f} ms (median); ceiling ...")
                    measure_ceiling(args, row, work_dir)
                    progress(f"  ceiling send>last {row.ceiling_from_send * 1000:.1f} ms")
                    report.rows.append(row)
        if "memory" in args.rows:
            progress(f"{config.name}: memory, {args.memory_changes} changes to {args.memory_subscribers} ...")
            try:
                report.memory.append(
                    memory.measure(
                        bench, args.memory_subscribers, args.memory_changes, args.memory_writers, args.memory_timeout
                    )
                )
            except SystemExit as failure:
                report.failures.append(f"{config.name} memory: FAILED: {failure}")
        if "storm" in args.rows:  # last: it lengthens the log for good
            progress(f"{config.name}: storm, {args.storm_sockets} sockets, {args.storm_log_events} events ...")
            try:
                report.storms.append(
                    storm.measure(
                        bench, args.storm_sockets, args.storm_log_events, args.storm_attempts, args.storm_timeout
                    )
                )
            except SystemExit as failure:
                report.failures.append(f"{config.name} storm: FAILED: {failure}")
    for server in servers:
        report.findings += [f"{server.log.name}: {line}" for line in stack.log_findings(server.log)]


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
