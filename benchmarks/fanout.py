"""Measure how fast, and at what SQL cost, one change reaches N live subscribers on P processes.

For each channel layer (channels-redis `core` or `pubsub`), number of daphne processes P, number
of subscribers N and subscription (`sourceEvents`, `dataLibrary`), the script opens N WebSocket
subscribers (graphql-transport-ws, an API token in connection_init) split evenly over the P
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

Results are matched by content: a sourceEvents result carries the marker its change wrote; a
dataLibrary result is the r-th after the first, and must have been computed after round r's
mutation was sent (its generatedAt). No round starts before every subscriber is running: each
has received a result (repeated warm-up changes for sourceEvents, which sends nothing at first),
then one more warm-up change that all of them must receive.

The subscribers live in client processes (benchmarks/subscribers.py, one asyncio loop each, one
per 500 subscribers by default) so that one loop parsing a thousand frames per change does not
become what is measured. They still share the machine's CPUs with the servers, Redis and
PostgreSQL: the CPU columns say who used what (on a 2-CPU machine the clients used a few per
cent of what the servers did, and more client processes only took CPU from the servers), and
the `other` column says how much the rest of the machine (other people's work) took meanwhile.

Needs PostgreSQL and Redis. The script drops and creates its own database (dropped again at
the end) and empties its own Redis database before each server configuration and at the end.

Usage (from the project root):

    .venv/bin/python benchmarks/fanout.py --layer both   # the whole matrix: ~14 minutes on 2 CPUs
    .venv/bin/python benchmarks/fanout.py --layer pubsub --processes 2 --subscribers 1000 --rounds 50
    .venv/bin/python benchmarks/fanout.py --database-url postgres://me@db:5432/bench --redis-url redis://r:6379/3
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
from pathlib import Path
from typing import Any

# Run as a script (benchmarks/fanout.py): make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import stack
from benchmarks.report import Row, print_report
from benchmarks.subscribers import Clients, Plan

KINDS = {
    "sourceEvents": (
        "subscription { sourceEvents { cursor kind sourceId occurredAt actor source { id country dataVendor "
        "panel status deliveryStatus scopeOfSubscription version updatedAt } } }"
    ),
    "dataLibrary": (
        "subscription { dataLibrary { windowDays generatedAt sections { key title counters { key label count } } } }"
    ),
}
UPDATE = """
mutation($id: ID!, $marker: String!) {
  updateSource(id: $id, input: {scopeOfSubscription: $marker}) {
    ... on Source { scopeOfSubscription version }
    ... on OperationInfo { messages { code message } }
  }
}"""
MUTATION_ONLY_ROUNDS = 10
OPEN_AT_ONCE = 40  # WebSocket handshakes in flight, all client processes together
WARM_UP_WAIT = 5  # seconds between warm-up changes while subscriptions start


class Bench:
    """One running server configuration: its processes, the token, the source the changes edit."""

    def __init__(self, args: argparse.Namespace, layer: str, servers: list[stack.Server], token: str) -> None:
        self.args, self.layer, self.servers, self.token = args, layer, servers, token
        self.source_id = self.graphql("{ sources(pagination: {limit: 1}) { id } }")["sources"][0]["id"]
        self.markers = (f"bench {layer} {len(servers)}p {n}" for n in range(10**9))

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (our own loopback server)
            f"{self.servers[0].http}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 (our own loopback server)
            result = json.load(response)
        if result.get("errors"):
            raise SystemExit(f"GraphQL errors: {result['errors']}")
        return result["data"]

    def change(self) -> tuple[str, float, float]:
        """Write a new marker into the source; return it, when the request left and when the answer came."""
        marker = next(self.markers)
        sent = time.monotonic()
        data = self.graphql(UPDATE, {"id": self.source_id, "marker": marker})
        answered = time.monotonic()
        if data["updateSource"].get("scopeOfSubscription") != marker:
            raise SystemExit(f"updateSource did not apply: {data}")
        return marker, sent, answered

    def queries(self) -> tuple[int, Counter[str]]:
        total, statements = 0, Counter()
        for server in self.servers:
            count, by_statement = stack.server_queries(server)
            total += count
            statements.update(by_statement)
        return total, statements

    def server_cpu(self) -> float:
        return sum(stack.process_cpu_seconds(server.process.pid) for server in self.servers)

    def mutation_cost(self) -> tuple[float, float, Counter[str]]:
        """Return what one change costs with no subscriber connected: queries, server CPU, statements."""
        self.change()  # a process's first change fills caches: not counted
        queries, statements = self.queries()
        cpu = self.server_cpu()
        for _ in range(MUTATION_ONLY_ROUNDS):
            self.change()
        queries_after, statements_after = self.queries()
        cpu_after = self.server_cpu()
        per_change = Counter({s: n / MUTATION_ONLY_ROUNDS for s, n in (statements_after - statements).items()})
        return (queries_after - queries) / MUTATION_ONLY_ROUNDS, (cpu_after - cpu) / MUTATION_ONLY_ROUNDS, per_change

    def drained(self, seconds: float) -> bool:
        """Wait until no server runs a WebSocket instance any more (its disconnect handled)."""
        deadline = time.monotonic() + seconds
        while any(stack.server_websockets(server) for server in self.servers):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)  # polling the condition above, with a deadline
        return True


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (index < total % parts) for index in range(parts)]


def plans(bench: Bench, count: int, kind: str, clients: int) -> list[Plan]:
    """Split `count` subscribers evenly over the servers, and each server's share over the clients."""
    per_client: list[list[tuple[str, int]]] = [[] for _ in range(clients)]
    for server, server_share in zip(bench.servers, shares(count, len(bench.servers)), strict=True):
        for urls, client_share in zip(per_client, shares(server_share, clients), strict=True):
            if client_share:
                urls.append((server.websocket, client_share))
    at_once = max(1, OPEN_AT_ONCE // clients)
    return [Plan(urls, bench.token, kind, KINDS[kind], open_at_once=at_once) for urls in per_client]


def client_processes(args: argparse.Namespace, count: int) -> int:
    if args.client_processes:
        return args.client_processes
    return max(1, min(args.max_client_processes, -(-count // args.subscribers_per_client)))


def start(bench: Bench, clients: Clients, count: int, kind: str) -> None:
    """Open the subscribers and return once every one is running, warm and caught up."""
    args = bench.args
    opened = clients.ask([("open", plan) for plan in plans(bench, count, kind, len(clients.pipes))])
    if sum(answer["opened"] for answer in opened) != count:
        failures = [failure for answer in opened for failure in answer["failures"]]
        raise SystemExit(f"only {sum(a['opened'] for a in opened)} of {count} subscribers opened: {failures}")
    # A subscriber with a result is running on the server. A sourceEvents subscription sends
    # nothing first, and misses a change committed before the server started it: change
    # again until every one has a result.
    if kind == "dataLibrary":
        not_ready = sum(clients.ask_all("ready", (1, args.ready_timeout)))
    else:
        deadline = time.monotonic() + args.ready_timeout
        not_ready = count
        while not_ready and time.monotonic() < deadline:
            bench.change()
            not_ready = sum(clients.ask_all("ready", (1, WARM_UP_WAIT)))
    if not_ready:
        problems = [p for answer in clients.ask_all("stats") for p in answer["problems"]]
        raise SystemExit(f"{not_ready} of {count} subscribers had no result after {args.ready_timeout} s: {problems}")
    # Then one change that every subscriber must receive.
    marker, _, _ = bench.change()
    key = 1 if kind == "dataLibrary" else marker  # dataLibrary: the result after the first
    missing = sum(answer["missing"] for answer in clients.ask_all("wait", (key, args.round_timeout)))
    if missing:
        raise SystemExit(f"{missing} of {count} subscribers did not receive the warm-up change")


def measure(bench: Bench, count: int, kind: str, mutation: tuple[float, float, Counter[str]]) -> Row:
    """Open `count` subscribers of `kind`, make the changes, close them; return the figures."""
    args = bench.args
    row = Row(bench.layer, len(bench.servers), count, kind, client_processes(args, count))
    row.queries_mutation, row.server_cpu_mutation, mutation_statements = mutation
    clients = Clients(row.clients)
    try:
        opening = time.monotonic()
        start(bench, clients, count, kind)
        row.open_seconds = time.monotonic() - opening

        # Queries that come with time, not with changes (e.g. each process's periodic
        # catch-up check): their rate over a quiet spell, taken out of the fan-out's figure.
        idle_before, _ = bench.queries()
        time.sleep(args.idle_seconds)
        idle_rate = (bench.queries()[0] - idle_before) / args.idle_seconds

        queries_before, statements_before = bench.queries()
        started = time.monotonic()
        cpu_before = cpu_use(bench, clients)
        lasts, firsts, p50s, http, from_send = [], [], [], [], []
        result = 2  # dataLibrary: the index of the next result (after the first and the warm-up's)
        for _ in range(args.rounds):
            if kind == "dataLibrary":
                clients.ask_all("round", (result, time.time()))
            marker, sent, answered = bench.change()
            answers = clients.ask_all("wait", (result if kind == "dataLibrary" else marker, args.round_timeout))
            result += 1
            times = sorted(t for answer in answers for t in answer["times"])
            row.missing += sum(answer["missing"] for answer in answers)
            http.append(answered - sent)
            if times:
                lasts.append(times[-1] - answered)
                from_send.append(times[-1] - sent)
                firsts.append(times[0] - answered)
                p50s.append(statistics.median(times) - answered)
            time.sleep(args.pause)
        queries_after, statements_after = bench.queries()
        row.queries_background = idle_rate * (time.monotonic() - started) / args.rounds
        cpu_after = cpu_use(bench, clients)

        if not lasts:
            raise SystemExit(f"{row.label}: no subscriber received any round's result")
        row.last_median, row.last_max = statistics.median(lasts), max(lasts)
        row.first_median, row.p50_median = statistics.median(firsts), statistics.median(p50s)
        row.mutation_http, row.last_from_send = statistics.median(http), statistics.median(from_send)
        row.queries_total = (queries_after - queries_before) / args.rounds
        row.server_cpu, row.client_cpu, row.redis_cpu, machine = (
            (after - before) / args.rounds for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        row.other_cpu = machine - row.server_cpu - row.client_cpu - row.redis_cpu
        # What a change costs beyond the mutation's own statements: the fan-out's, and time-based ones.
        row.statements = Counter({s: n / args.rounds for s, n in (statements_after - statements_before).items()})
        row.statements.subtract(mutation_statements)
        for answer in clients.ask_all("stats"):
            row.duplicates += answer["duplicates"]
            row.stale += answer["stale"]
            row.problems += answer["problems"]
            if answer["closed"]:
                row.problems.append(f"{answer['closed']} sockets were closed during the run")
        if kind == "dataLibrary" and sum(answer["results"] for answer in clients.ask_all("stats")) != count * result:
            row.problems.append("the subscribers did not get exactly one dataLibrary result per change")
    finally:
        clients.close()
    if not bench.drained(args.ready_timeout):
        row.problems.append(f"servers still ran WebSocket instances {args.ready_timeout} s after the clients left")
    if left := stack.group_members(args.redis_url):
        row.problems.append(f"{left} channels stayed in channel-layer groups after every subscriber had left")
        stack.flush_redis(args.redis_url)  # the next row must not pay for this one's leftovers
    return row


def cpu_use(bench: Bench, clients: Clients) -> tuple[float, float, float, float]:
    """Return the CPU seconds used so far by the servers, the client processes, Redis, the whole machine."""
    servers, clients_cpu = bench.server_cpu(), sum(clients.ask_all("cpu"))
    return servers, clients_cpu, stack.redis_cpu_seconds(bench.args.redis_url), stack.machine_busy_seconds()


def run_layer(args: argparse.Namespace, layer: str, token: str, log_dir: Path) -> tuple[list[Row], list[str]]:
    """Measure every configuration of one channel layer; return the rows and the server logs' findings."""
    rows, findings = [], []
    env = stack.service_env(args.database_url, args.redis_url, layer)
    for processes in args.processes:
        stack.flush_redis(args.redis_url)  # no group members left over from stopped servers
        with stack.servers(processes, env, log_dir, f"{layer}-{processes}p") as servers:
            bench = Bench(args, layer, servers, token)
            mutation = bench.mutation_cost()
            for count in args.subscribers:
                for kind in args.kinds:
                    progress(f"{layer}: {processes} process(es), {count} {kind} subscribers ...")
                    row = measure(bench, count, kind, mutation)
                    progress(f"  last subscriber after {row.last_median * 1000:.1f} ms (median)")
                    rows.append(row)
        for server in servers:
            findings += [f"{server.log.name}: {line}" for line in stack.log_findings(server.log)]
    return rows, findings


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def reproduce(args: argparse.Namespace) -> str:
    """Return the command that runs this benchmark again with the same settings, defaults spelt out."""
    argv = [".venv/bin/python", "benchmarks/fanout.py", f"--layer={args.layer}"]
    argv += [f"--processes={','.join(map(str, args.processes))}", f"--kinds={','.join(args.kinds)}"]
    argv += [f"--subscribers={','.join(map(str, args.subscribers))}", f"--rounds={args.rounds}"]
    argv += [f"--pause={args.pause}", f"--idle-seconds={args.idle_seconds}"]
    argv += [f"--round-timeout={args.round_timeout}", f"--ready-timeout={args.ready_timeout}"]
    if args.client_processes:
        argv.append(f"--client-processes={args.client_processes}")
    else:
        argv += [f"--subscribers-per-client={args.subscribers_per_client}"]
        argv += [f"--max-client-processes={args.max_client_processes}"]
    argv += [f"--database-url={args.database_url}", f"--redis-url={args.redis_url}"]
    return f"cd {stack.ROOT} && " + " ".join(shlex.quote(arg) for arg in argv)


def numbers(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--layer", choices=("core", "pubsub", "both"), default="both", help="channels-redis layer")
    parser.add_argument("--processes", type=numbers, default=[1, 2], help="server processes P, comma-separated")
    parser.add_argument("--subscribers", type=numbers, default=[100, 1000], help="subscribers N, comma-separated")
    parser.add_argument("--kinds", type=lambda text: text.split(","), default=list(KINDS), help="subscriptions")
    parser.add_argument("--rounds", type=int, default=20, help="changes measured per row")
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between rounds")
    parser.add_argument("--idle-seconds", type=float, default=6, help="quiet spell that rates time-based queries")
    parser.add_argument("--round-timeout", type=float, default=60, help="seconds a round may take")
    parser.add_argument("--ready-timeout", type=float, default=180, help="seconds for all subscriptions to run")
    parser.add_argument("--client-processes", type=int, default=0, help="client processes (0: see the next two)")
    parser.add_argument("--subscribers-per-client", type=int, default=500, help="one client process per this many")
    parser.add_argument("--max-client-processes", type=int, default=4, help="but no more than this many")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench", help="dropped, made")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12", help="its database is emptied")
    parser.add_argument("--keep-database", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--show-queries", action="store_true", help="print the SQL statements each change costs")
    args = parser.parse_args()
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"unknown --kinds {sorted(unknown)}; choose from {list(KINDS)}")
    return args


def main() -> None:
    args = arguments()
    load_before = os.getloadavg()[0]  # others' work on the machine shows in the delays
    # A thousand sockets on each side; the servers and client processes inherit the limit.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log_dir = Path(tempfile.mkdtemp(prefix="fanout-bench-"))
    progress(f"server logs in {log_dir}")
    layers = ["core", "pubsub"] if args.layer == "both" else [args.layer]
    rows, findings = [], []
    stack.reset_database(args.database_url)
    try:
        progress("preparing the database (migrate, demo data, user, token) ...")
        token = stack.prepare_database(stack.service_env(args.database_url, args.redis_url, layers[0]))
        for layer in layers:
            layer_rows, layer_findings = run_layer(args, layer, token, log_dir)
            rows += layer_rows
            findings += layer_findings
        services = f"PostgreSQL {stack.database_version(args.database_url)}"
        services += f", Redis {stack.redis_version(args.redis_url)}"
    finally:
        if not args.keep_database:
            stack.drop_database(args.database_url)
        stack.flush_redis(args.redis_url)
    print_report(
        rows,
        findings,
        command=reproduce(args),
        services=services,
        load=(load_before, os.getloadavg()[0]),
        show_queries=args.show_queries,
    )


if __name__ == "__main__":
    main()
