"""The service as the fan-out benchmark drives it: configurations, the running servers, opening subscribers."""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any

from benchmarks import stack
from benchmarks.operations import Operation
from benchmarks.subscribers import Clients, Plan

UPDATE = """
mutation($id: ID!, $marker: String!) {
  updateSource(id: $id, input: {scopeOfSubscription: $marker}) {
    ... on Source { scopeOfSubscription version }
    ... on OperationInfo { messages { code message } }
  }
}"""
SOURCES = "{ sources(pagination: {limit: 1000}) { id country dataVendor panel panelGroup granularity status version } }"
MUTATION_ONLY_ROUNDS = 10
OPEN_AT_ONCE = 40  # WebSocket handshakes in flight, all client processes together
WARM_UP_WAIT = 5  # seconds between warm-up changes while subscriptions start


@dataclass(frozen=True)
class Config:
    """Where the servers keep their data and pass changes: `layer` None is the embedded defaults."""

    name: str
    layer: str | None  # channels-redis layer, None: SQLite and the in-memory layer
    processes: int

    @property
    def embedded(self) -> bool:
        return self.layer is None


CONFIGS = {
    "embedded": Config("embedded", None, 1),
    "pubsub-1p": Config("pubsub-1p", "pubsub", 1),
    "pubsub-2p": Config("pubsub-2p", "pubsub", 2),
    "core-1p": Config("core-1p", "core", 1),
    "core-2p": Config("core-2p", "core", 2),
}


class Bench:
    """One running server configuration: its processes, the token, the source the changes edit."""

    def __init__(self, args: argparse.Namespace, config: Config, servers: list[stack.Server], token: str) -> None:
        self.args, self.config, self.servers, self.token = args, config, servers, token
        self.layer = config.name
        self.sources: list[dict[str, Any]] = self.graphql(SOURCES)["sources"]
        self.source = self.sources[0]  # the newest: first on every page of `sources`
        self.source_id = self.source["id"]
        # Unique across the servers a run starts: a marker names one change of the whole run.
        self.markers = (f"bench {config.name} {servers[0].port} {n}" for n in range(10**9))
        self.changes = 0  # every change this run made through `change`, numbered from 1

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        request = urllib.request.Request(  # noqa: S310 (our own loopback server)
            f"{self.servers[0].http}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 (our own loopback server)
            result = json.load(response)
        if result.get("errors"):
            raise SystemExit(f"GraphQL errors: {result['errors']}")
        return result["data"]

    def change(self, clients: Clients | None = None, source_id: str | None = None) -> tuple[int, str, float, float]:
        """Write a new marker into the source, announced to `clients` first.

        Return the change's number, its marker, when the request left and when the answer came.
        """
        marker = next(self.markers)
        self.changes += 1
        if clients is not None:
            clients.ask_all("round", (self.changes, marker, time.time()))
        sent = time.monotonic()
        data = self.graphql(UPDATE, {"id": source_id or self.source_id, "marker": marker})
        answered = time.monotonic()
        if data["updateSource"].get("scopeOfSubscription") != marker:
            raise SystemExit(f"updateSource did not apply: {data}")
        return self.changes, marker, sent, answered

    def queries(self) -> tuple[int, Counter[str]]:
        total, statements = 0, Counter()
        for server in self.servers:
            count, by_statement = stack.server_queries(server)
            total += count
            statements.update(by_statement)
        return total, statements

    def server_cpu(self) -> float:
        return sum(stack.process_cpu_seconds(server.process.pid) for server in self.servers)

    def rss_kib(self) -> int:
        return sum(stack.rss_kib(server.process.pid) for server in self.servers)

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
        while True:
            try:
                if not any(stack.server_websockets(server) for server in self.servers):
                    return True
            except OSError:  # a server too busy to answer within get_json's timeout: still busy
                pass
            if time.monotonic() > deadline:
                return False
            time.sleep(0.2)  # polling the condition above, with a deadline


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (index < total % parts) for index in range(parts)]


def plans(servers: list[stack.Server], token: str, operations: list[Operation], count: int, clients: int) -> list[Plan]:
    """Split `count` subscribers evenly over the servers and each server's share over the clients.

    Subscriber i runs operations[i % len(operations)]: each operation has its share everywhere.
    """
    per_client: list[list[tuple[str, Operation]]] = [[] for _ in range(clients)]
    number = 0
    for server, server_share in zip(servers, shares(count, len(servers)), strict=True):
        for sockets, client_share in zip(per_client, shares(server_share, clients), strict=True):
            for _ in range(client_share):
                sockets.append((f"127.0.0.1:{server.port}", operations[number % len(operations)]))
                number += 1
    at_once = max(1, OPEN_AT_ONCE // clients)
    return [Plan(sockets, token, at_once) for sockets in per_client]


def client_processes(args: argparse.Namespace, count: int) -> int:
    if args.client_processes:
        return args.client_processes
    return max(1, min(args.max_client_processes, -(-count // args.subscribers_per_client)))


def start(bench: Bench, clients: Clients, operations: list[Operation], count: int) -> None:
    """Open the subscribers and return once every one is running, warm and caught up."""
    args = bench.args
    plan = plans(bench.servers, bench.token, operations, count, len(clients.pipes))
    opened = clients.ask([("open", p) for p in plan])
    if sum(answer["opened"] for answer in opened) != count:
        failures = [failure for answer in opened for failure in answer["failures"]]
        raise SystemExit(f"only {sum(a['opened'] for a in opened)} of {count} subscribers opened: {failures}")
    # A subscriber with a result is running on the server. A sourceEvents subscription sends
    # nothing first, and misses a change committed before the server started it: change
    # again until every one has a result.
    deadline = time.monotonic() + args.ready_timeout
    not_ready = sum(
        clients.ask_all("ready", (1, 0 if any("sourceEvents" in o.query for o in operations) else args.ready_timeout))
    )
    while not_ready and time.monotonic() < deadline:
        bench.change(clients)
        not_ready = sum(clients.ask_all("ready", (1, WARM_UP_WAIT)))
    if not_ready:
        problems = [p for answer in clients.ask_all("stats") for p in answer["problems"]]
        raise SystemExit(f"{not_ready} of {count} subscribers had no result after {args.ready_timeout} s: {problems}")
    # Then one change that every subscriber must receive.
    index, marker, _, _ = bench.change(clients)
    missing = sum(answer["missing"] for answer in clients.ask_all("wait", (index, marker, args.round_timeout)))
    if missing:
        raise SystemExit(f"{missing} of {count} subscribers did not receive the warm-up change")
    # A first result computed after a warm-up change was announced is filed under that change,
    # and that change's own result then counts twice: only what comes from here on counts.
    clients.ask_all("reset")
