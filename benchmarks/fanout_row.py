"""The fan-out row: N subscribers on one configuration, R changes one after the other; and its ceiling."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import stack
from benchmarks.operations import CEILING, IDENTICAL, Operation, mixed
from benchmarks.report import Row
from benchmarks.service import Bench, client_processes, plans, start
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
        row.last_from_send_max = max(figures.from_send)
        row.queries_total = (queries_after - queries_before) / args.rounds
        row.server_cpu, row.client_cpu, row.redis_cpu, machine = (
            (after - before) / args.rounds for before, after in zip(cpu_before, cpu_after, strict=True)
        )
        row.other_cpu = machine - row.server_cpu - row.client_cpu - row.redis_cpu
        # What a change costs beyond the mutation's own statements: the fan-out's, and time-based ones.
        row.statements = Counter({s: n / args.rounds for s, n in (statements_after - statements_before).items()})
        row.statements.subtract(mutation_statements)
        sizes, digests = [], {}
        for answer in clients.ask_all("stats"):
            for operation, key, digest in answer["digests"]:
                digests.setdefault((operation, key), set()).add(digest)
            row.duplicates += answer["duplicates"]
            row.stale += answer["stale"]
            row.problems += answer["problems"]
            sizes += answer["frame_bytes"]
            if answer["closed"]:
                row.problems.append(f"{answer['closed']} sockets were closed during the run")
        row.frame_bytes = statistics.mean(sizes) if sizes else 0.0
        # The subscribers of one operation must all get the same result for a change.
        differing = sorted(str(pair) for pair, seen in digests.items() if len(seen) > 1)
        row.differ = len(differing)
        if differing:
            row.problems.append(f"{len(differing)} (operation, change) got different results, e.g. {differing[:3]}")
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
