"""Slow clients and bursts: what the server holds, and how soon the newest state arrives.

`.venv/bin/python benchmarks/backpressure.py` runs two rows against one `project.serve` process
of the real application, on PostgreSQL + Redis (pub/sub layer) unless `--embedded`:

- **slow**: SLOW clients subscribe to `sourceEvents` and stop reading (an 8 KiB receive buffer:
  the TCP window fills) while CHANGES changes are made by WRITERS concurrent writers over HTTP.
  A well-behaved subscriber notes each change's delay (its arrival, minus the change's
  `occurredAt`). The row runs twice, without the slow clients (the reference, measured in the
  same run) and with them: server RSS growth (its peak during the changes, minus before), the
  delay's p50 and p99 and their ratio, the close code each slow client finds once it reads
  again, and whether each, resuming with `after` its last cursor, ends with every change once
  and in order.
- **burst**: LIVE `dataLibrary` and EVENTS `sourceEvents` subscribers (in client processes);
  WRITERS writers add BURST sources at once. It reports the results each live subscriber got,
  and the time from the last commit (the last mutation's answer) to the last subscriber's final
  result: the counters after the last change, or the last event.

Each figure sits beside the goal of issue 11; the machine is shared, so the ratio is the figure
that holds, not an absolute time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from websockets.asyncio.client import connect as aconnect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from benchmarks import stack

INIT = "connection_init"
EVENTS = (
    "subscription Follow($after: String) { sourceEvents(after: $after) { cursor occurredAt kind sourceId "
    "source { id country dataVendor panel scopeOfSubscription status version updatedAt } } }"
)
LIBRARY = "subscription { dataLibrary { sections { key counters { key count } } } }"
UPDATE = "mutation($id: ID!, $s: String!) { updateSource(id: $id, input: {scopeOfSubscription: $s}) { __typename } }"
ADD = (
    'mutation($c: String!) { addSource(input: {country: $c, dataVendor: "Burst", panel: "P", dataType: "T"}) '
    "{ __typename } }"
)
SOURCES = "{ sources(pagination: {limit: 36}) { id } }"
CLIENT_PROCESSES = 4


def graphql(server: stack.Server, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(  # noqa: S310 (our own loopback server)
        f"{server.http}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
        body = json.load(response)
    if body.get("errors"):
        raise SystemExit(f"GraphQL errors: {body['errors']}")
    return body["data"]


def write_all(server: stack.Server, token: str, writers: int, jobs: list[tuple[str, dict[str, Any]]]) -> float:
    """Send every (query, variables) with `writers` at once; return when the last answer came (monotonic)."""
    with ThreadPoolExecutor(writers) as pool:
        list(pool.map(lambda job: graphql(server, token, *job), jobs))
    return time.monotonic()


# --- Subscribers in client processes: each notes (arrival, what it needs) of every result.


def _client(address: str, token: str, subscriptions: list[tuple[str, dict[str, Any]]], conn: Connection) -> None:
    asyncio.run(_client_main(address, token, subscriptions, conn))


async def _client_main(address: str, token: str, subscriptions: list[tuple[str, dict]], conn: Connection) -> None:
    records: list[list[tuple[float, float, str]]] = [[] for _ in subscriptions]
    sockets = []
    for query, variables in subscriptions:
        ws = await aconnect(
            f"ws://{address}/graphql",
            subprotocols=["graphql-transport-ws"],
            compression=None,
            max_size=None,
            ping_interval=None,
            open_timeout=60,
        )
        await ws.send(json.dumps({"type": INIT, "payload": {"authorization": f"Bearer {token}"}}))
        await ws.recv()
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables}}))
        sockets.append(ws)

    first = [asyncio.Event() for _ in subscriptions]

    async def read(index: int, ws: Any) -> None:
        async for frame in ws:
            # Noted before it is parsed; parsed only as far as the benchmark needs.
            records[index].append((time.monotonic(), time.time(), frame))
            first[index].set()

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    for index, (query, _) in enumerate(subscriptions):
        if query == LIBRARY:  # a live subscriber listens once it has its first result
            await first[index].wait()
    conn.send("open")
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "stop"
    for task in readers:
        task.cancel()
    for ws in sockets:
        await ws.close()
    conn.send([[(m, w, _essence(f)) for m, w, f in rs] for rs in records])


def _essence(frame: str) -> str:
    message = json.loads(frame)
    if message.get("type") != "next":
        return "!" + frame[:200]
    data = message["payload"].get("data") or {}
    if "sourceEvents" in data:
        event = data["sourceEvents"]
        return f"{event['cursor']} {event['occurredAt']}"
    counters = {c["key"]: c["count"] for s in data["dataLibrary"]["sections"] for c in s["counters"]}
    return json.dumps(counters, sort_keys=True)


class Subscribers:
    """Subscriptions spread over client processes; `collect()` stops them and returns their records."""

    def __init__(self, address: str, token: str, subscriptions: list[tuple[str, dict]], processes: int) -> None:
        self.pipes, self.processes = [], []
        share = -(-len(subscriptions) // processes)
        for start in range(0, len(subscriptions), share):
            ours, theirs = multiprocessing.Pipe()
            process = multiprocessing.Process(
                target=_client, args=(address, token, subscriptions[start : start + share], theirs)
            )
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)
        for pipe in self.pipes:
            if not pipe.poll(120) or pipe.recv() != "open":
                raise SystemExit("a client process did not open its sockets")

    def collect(self) -> list[list[tuple[float, float, str]]]:
        for pipe in self.pipes:
            pipe.send("stop")
        records = [record for pipe in self.pipes for record in pipe.recv()]
        for process in self.processes:
            process.join()
        return records


# --- Slow clients: a real socket whose receive buffer is 8 KiB, which stops reading.


class SlowClient(threading.Thread):
    def __init__(self, server: stack.Server, token: str, after: str, expected: int) -> None:
        super().__init__(daemon=True)
        self.server, self.token, self.after, self.expected = server, token, after, expected
        self.resume = threading.Event()
        self.subscribed = threading.Event()
        self.cursors: list[str] = []
        self.close_code: str = "open"
        self.before_close = 0

    def _open(self, slow: bool) -> Any:
        sock = socket.create_connection(("127.0.0.1", self.server.port))
        if slow:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        # One frame waiting unread stops a slow one reading from the network.
        return connect(
            self.server.websocket,
            sock=sock,
            subprotocols=["graphql-transport-ws"],
            compression=None,
            ping_interval=None,
            max_queue=1 if slow else 4096,
            max_size=None,
        )

    def _subscribe(self, ws: Any) -> None:
        ws.send(json.dumps({"type": INIT, "payload": {"authorization": f"Bearer {self.token}"}}))
        ws.recv(30)
        after = self.cursors[-1] if self.cursors else self.after
        payload = {"query": EVENTS, "variables": {"after": after}}
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))

    def _next_cursor(self, ws: Any, timeout: float) -> None:
        self.cursors.append(json.loads(ws.recv(timeout))["payload"]["data"]["sourceEvents"]["cursor"])

    def run(self) -> None:
        with self._open(slow=True) as ws:
            self._subscribe(ws)
            self.subscribed.set()
            self.resume.wait()  # reads nothing meanwhile: the TCP window fills, the server holds the rest
            try:
                while len(self.cursors) < self.expected:
                    self._next_cursor(ws, 30)
            except ConnectionClosed as closed:
                self.close_code = str(closed.rcvd.code) if closed.rcvd else "no close frame"
            except TimeoutError:
                self.close_code = "silent"
            self.before_close = len(self.cursors)
        if len(self.cursors) < self.expected:
            with self._open(slow=False) as ws:  # resume after the last cursor read
                self._subscribe(ws)
                while len(self.cursors) < self.expected:
                    self._next_cursor(ws, 60)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_cursor(server: stack.Server, token: str, source_id: str) -> str:
    """Return the cursor of a new change: every subscriber resumes after it, and misses none after."""
    with connect(server.websocket, subprotocols=["graphql-transport-ws"], compression=None, max_size=None) as ws:
        ws.send(json.dumps({"type": INIT, "payload": {"authorization": f"Bearer {token}"}}))
        ws.recv(30)
        subscribe = {"query": "subscription { sourceEvents { cursor } }", "variables": {}}
        ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        for n in range(30):
            graphql(server, token, UPDATE, {"id": source_id, "s": f"start {n} {time.time()}"})
            try:
                return json.loads(ws.recv(1))["payload"]["data"]["sourceEvents"]["cursor"]
            except TimeoutError:  # it did not listen yet when that change committed
                continue
    raise SystemExit("no change reached a subscriber")


def slow_run(
    server: stack.Server, token: str, slow: int, changes: int, writers: int, resume_after: float | None
) -> dict[str, Any]:
    sources = [s["id"] for s in graphql(server, token, SOURCES)["sources"]]
    start = start_cursor(server, token, sources[-1])

    reference = Subscribers(f"127.0.0.1:{server.port}", token, [(EVENTS, {"after": start})], 1)
    clients = [SlowClient(server, token, start, changes) for _ in range(slow)]
    for client in clients:
        client.start()
        client.subscribed.wait(30)
    before = stack.rss_kib(server.process.pid)
    peak = [before]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.2):
            peak.append(stack.rss_kib(server.process.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if resume_after is not None:  # the slow clients read again while the changes go on
        threading.Timer(resume_after, lambda: [client.resume.set() for client in clients]).start()
    jobs = [(UPDATE, {"id": sources[n % writers], "s": f"change {n}"}) for n in range(changes)]
    began = time.monotonic()
    write_all(server, token, writers, jobs)
    wrote = time.monotonic() - began
    time.sleep(2)  # for the last results in flight; what has not arrived by then is reported missing
    sampling.set()
    sampler.join()
    [received] = reference.collect()
    cursors = [essence.split()[0] for _, _, essence in received if not essence.startswith("!")]
    delays = [wall - _epoch(essence.split()[1]) for _, wall, essence in received if not essence.startswith("!")]
    for client in clients:
        client.resume.set()
    for client in clients:
        client.join(300)
    return {
        "slow": slow,
        "changes": changes,
        "received": len(cursors),
        "in order, once": cursors == sorted(set(cursors)) and len(cursors) == changes,
        "writes per s": changes / wrote,
        "p50 ms": statistics.median(delays) * 1000 if delays else float("nan"),
        "p99 ms": percentile(delays, 0.99) * 1000 if delays else float("nan"),
        "rss before MiB": before / 1024,
        "rss growth MiB": (max(peak) - before) / 1024,
        "close codes": dict(Counter(client.close_code for client in clients)),
        "read before the close": sorted(client.before_close for client in clients),
        "slow clients complete": sum(client.cursors == cursors for client in clients),
    }


def _epoch(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def burst_run(server: stack.Server, token: str, live: int, events: int, burst: int, writers: int) -> dict[str, Any]:
    address = f"127.0.0.1:{server.port}"
    start = start_cursor(server, token, graphql(server, token, SOURCES)["sources"][0]["id"])
    subscriptions = [(LIBRARY, {})] * live + [(EVENTS, {"after": start})] * events
    # Open once each live subscriber has its first result; the event ones resume after `start`.
    subscribers = Subscribers(address, token, subscriptions, CLIENT_PROCESSES)
    jobs = [(ADD, {"c": f"Burst {n}"}) for n in range(burst)]
    last_commit = write_all(server, token, writers, jobs)
    time.sleep(3)  # for the last results in flight: the figure is measured from arrivals, not this wait
    records = subscribers.collect()
    final = json.dumps(
        {
            c["key"]: c["count"]
            for s in graphql(server, token, LIBRARY.replace("subscription", "query"))["dataLibrary"]["sections"]
            for c in s["counters"]
        },
        sort_keys=True,
    )
    live_results, finals, problems = [], [], 0
    for records_of in records[:live]:
        live_results.append(len(records_of) - 1)  # after the first
        at = [m for m, _, essence in records_of if essence == final]
        problems += not at or records_of[-1][2] != final
        finals.append(at[0] if at else float("inf"))
    last_logged = 0.0
    for records_of in records[live:]:
        problems += len(records_of) != burst
        finals.append(records_of[-1][0] if records_of else float("inf"))
        if records_of:
            last_logged = max(last_logged, _epoch(records_of[-1][2].split()[1]))
    # The same arrivals in wall time, against the last change's occurredAt (logged just before its commit).
    final_walls = [next((w for _, w, e in rs if e == final), float("inf")) for rs in records[:live]] + [
        rs[-1][1] if rs else float("inf") for rs in records[live:]
    ]
    return {
        "live": live,
        "events": events,
        "burst": burst,
        "live results min/median/max": (min(live_results), statistics.median(live_results), max(live_results)),
        "last answer -> last final result ms": (max(finals) - last_commit) * 1000,
        "last change logged -> last final result ms": (max(final_walls) - last_logged) * 1000,
        "subscribers without the final state": problems,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--embedded", action="store_true", help="SQLite and the in-memory layer, not PostgreSQL + Redis"
    )
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/bench")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    parser.add_argument("--rows", default="slow,burst")
    parser.add_argument(
        "--skip-reference", action="store_true", help="the slow row without its run without slow clients"
    )
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument(
        "--resume-after",
        type=float,
        default=None,
        help="seconds after which the slow clients read again (default: once every change is made)",
    )
    parser.add_argument("--live", type=int, default=200)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--burst", type=int, default=500)
    args = parser.parse_args()
    rows = args.rows.split(",")
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        for row in rows:
            for slow in [0, args.slow] if row == "slow" else [None]:
                if slow == 0 and args.skip_reference:
                    continue
                database, redis_url = ("", "") if args.embedded else (args.database_url, args.redis_url)
                if database:
                    stack.reset_database(database)
                    stack.flush_redis(redis_url)
                env = stack.service_env(database, redis_url, "pubsub", str(work / f"{row}{slow}.sqlite3"))
                token = stack.prepare_database(env)
                with stack.servers(1, env, work, f"{row}{slow}", application="project.asgi:application") as [server]:
                    if row == "slow":
                        result = slow_run(server, token, slow, args.changes, args.writers, args.resume_after)
                    else:
                        result = burst_run(server, token, args.live, args.events, args.burst, args.writers)
                print(
                    json.dumps(
                        {"row": row, "config": "embedded" if args.embedded else "pubsub-1p", **result}, default=str
                    ),
                    flush=True,
                )
                for finding in stack.log_findings(server.log)[:5]:
                    print("  log:", finding)


if __name__ == "__main__":
    main()
