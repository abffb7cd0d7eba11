"""Subscriber processes for the fan-out benchmark, and the handle the benchmark drives them with.

Each client process runs one event loop holding its share of the subscribers: the tests'
GraphQL-over-WebSocket client (tests/support/websocket.py, graphql-transport-ws), one socket and
one subscription each, read frame by frame as raw text so that a result's arrival is noted
(`time.monotonic()`, on Linux one clock for every process of the machine) before it is parsed.
A subscriber files each result under a key read from the result (benchmarks/operations.py), so
that the benchmark can ask afterwards "when did each subscriber get round r's result?".
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from benchmarks.operations import Operation, marker_of
from tests.support.websocket import TRANSPORT_WS, Close, GraphQLWebSocket

HANDSHAKE_TIMEOUT = 120  # a thousand sign-ins queue up on one server process


@dataclass(frozen=True)
class Plan:
    """What one client process opens: one socket per (host:port, operation), one subscription each."""

    sockets: list[tuple[str, Operation]]
    token: str
    # Handshakes in flight from this process. More would only queue at the server, and beyond
    # its listen backlog (50 in Twisted) new connections wait for TCP to retry them, seconds later.
    open_at_once: int


@dataclass
class Rounds:
    """The changes of the run so far, as the benchmark announced them before sending each."""

    starts: list[float] = field(default_factory=list)  # wall time each change was sent, ascending
    indexes: list[int] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)

    def add(self, index: int, marker: str, started: float) -> None:
        self.starts.append(started)
        self.indexes.append(index)
        self.markers.append(marker)

    def at(self, generated: float) -> int | None:
        """Return the index of the last change sent before `generated` (None: before any)."""
        position = bisect.bisect_right(self.starts, generated)
        return self.indexes[position - 1] if position else None


@dataclass
class Subscriber:
    """One socket with one subscription, and when each of its results arrived."""

    operation: Operation
    arrivals: dict[Any, float] = field(default_factory=dict)  # result key -> monotonic time
    results: int = 0
    stale: int = 0  # results that show a state older than the last change sent before them
    duplicates: int = 0
    frame_bytes: int = 0  # the size of the last result frame
    digests: dict[Any, str] = field(default_factory=dict)  # result key -> digest of the result
    problems: list[str] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)  # set at every result

    def file(self, data: dict[str, Any], arrived: float, rounds: Rounds) -> None:
        """File a result under its key, counting repeats as duplicates or stale results."""
        self.results += 1
        latest = rounds.indexes[-1] if rounds.indexes else None
        if self.operation.match == "library":
            generated = dt.datetime.fromisoformat(data["dataLibrary"]["generatedAt"]).timestamp()
            key = rounds.at(generated)
            if key is None:
                return  # computed before the first announced change: a warm-up result
        else:
            key = marker_of(self.operation, data)
            if key is None:
                self.problems.append(f"{self.operation.name}: the changed source is not in {str(data)[:200]}")
                return
        if key not in self.arrivals:
            self.arrivals[key] = arrived
            self.digests[key] = digest(data)
        elif key in (latest, rounds.markers[-1] if rounds.markers else None) or "sourceEvents" in data:
            self.duplicates += 1
        else:
            self.stale += 1  # an older state than the last change's, sent again after it

    def key(self, index: int, marker: str) -> Any:
        return index if self.operation.match == "library" else marker


def digest(data: dict[str, Any]) -> str:
    """Return a digest of a result, but for the time it was computed (each process computes its own)."""
    if "dataLibrary" in data:
        data = {"dataLibrary": {k: v for k, v in data["dataLibrary"].items() if k != "generatedAt"}}
    return hashlib.blake2b(json.dumps(data, sort_keys=True).encode(), digest_size=8).hexdigest()


async def receive(ws: GraphQLWebSocket, subscriber: Subscriber, rounds: Rounds) -> None:
    while True:
        frame = await ws.transport.receive(None)
        arrived = time.monotonic()
        if isinstance(frame, Close):
            subscriber.problems.append(f"{subscriber.operation.name}: closed by the server {frame}")
            subscriber.got.set()
            return
        message = json.loads(frame)
        if message.get("type") == "ping":
            await ws.send({"type": "pong"})
            continue
        payload = message.get("payload") or {}
        if message.get("type") != "next" or payload.get("errors"):
            subscriber.problems.append(f"{subscriber.operation.name}: {message.get('type')}: {str(payload)[:200]}")
        else:
            subscriber.frame_bytes = len(frame)
            subscriber.file(payload["data"], arrived, rounds)
        subscriber.got.set()


async def subscribe(address: str, token: str, operation: Operation, guard: float) -> GraphQLWebSocket:
    """Open a socket, sign in with the token, start the subscription."""
    ws = GraphQLWebSocket(TRANSPORT_WS, address=address, token=token, timeout=guard)
    try:
        await ws.connect()
        payload = operation.payload()
        await ws.subscribe(payload["query"], payload["variables"])
    except BaseException:
        with contextlib.suppress(Exception):
            await ws.close()
        raise
    return ws


async def until(subscribers: list[Subscriber], done: Any, seconds: float) -> None:
    """Wait until `done(subscriber)` holds (or it has a problem) for all, at most `seconds`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            for subscriber in subscribers:
                while not done(subscriber) and not subscriber.problems:
                    subscriber.got.clear()
                    await subscriber.got.wait()


async def storm_socket(address: str, token: str, operation: Operation, attempts: int, guard: float) -> dict[str, Any]:
    """Open a socket and wait for its first result, trying up to `attempts` times; return what happened."""
    failures: list[str] = []
    for _ in range(attempts):
        ws = None
        try:
            async with asyncio.timeout(guard):
                ws = await subscribe(address, token, operation, guard)
                message = await ws.receive()
            if message.get("type") != "next" or message.get("payload", {}).get("errors"):
                raise RuntimeError(f"{message.get('type')}: {str(message)[:120]}")
            return {"served": time.monotonic(), "failures": failures, "socket": ws}
        except Exception as error:  # every way an attempt fails counts as a failed attempt
            failures.append(f"{type(error).__name__}: {str(error)[:120]}")
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
    return {"served": None, "failures": failures, "socket": None}


async def serve(pipe: Connection) -> None:
    """Obey the benchmark's commands until it says "close"; answer each one."""
    loop = asyncio.get_running_loop()
    sockets: list[GraphQLWebSocket] = []
    subscribers: list[Subscriber] = []
    tasks: list[asyncio.Task[None]] = []
    rounds = Rounds()
    while True:
        command, argument = await loop.run_in_executor(None, pipe.recv)
        if command == "open":
            plan: Plan = argument
            gate = asyncio.Semaphore(plan.open_at_once)

            async def gated(address: str, operation: Operation, plan: Plan = plan, gate: Any = gate) -> Any:
                async with gate:
                    return await subscribe(address, plan.token, operation, HANDSHAKE_TIMEOUT)

            opened = await asyncio.gather(*(gated(a, o) for a, o in plan.sockets), return_exceptions=True)
            failures = [repr(ws) for ws in opened if isinstance(ws, BaseException)]
            for ws, (_, operation) in zip(opened, plan.sockets, strict=True):
                if not isinstance(ws, BaseException):
                    subscriber = Subscriber(operation)
                    tasks.append(asyncio.create_task(receive(ws, subscriber, rounds)))
                    sockets.append(ws)
                    subscribers.append(subscriber)
            pipe.send({"opened": len(sockets), "failures": failures[:5]})
        elif command == "storm":  # every socket at once, each until its first result
            plan, attempts, timeout = argument
            outcomes = await asyncio.gather(
                *(storm_socket(a, plan.token, o, attempts, timeout) for a, o in plan.sockets)
            )
            sockets.extend(outcome.pop("socket") for outcome in outcomes if outcome["socket"] is not None)
            pipe.send(outcomes)
        elif command == "ready":  # every subscriber has `count` results
            count, seconds = argument
            await until(subscribers, lambda s, count=count: s.results >= count, seconds)
            pipe.send(sum(s.results < count for s in subscribers))
        elif command == "round":  # change `index`, writing `marker`, is sent at wall time `started`
            rounds.add(*argument)
            pipe.send(None)
        elif command == "wait":  # every subscriber has the result of change (index, marker)
            index, marker, seconds = argument
            await until(subscribers, lambda s, i=index, m=marker: s.key(i, m) in s.arrivals, seconds)
            times = [s.arrivals[s.key(index, marker)] for s in subscribers if s.key(index, marker) in s.arrivals]
            pipe.send({"times": times, "missing": len(subscribers) - len(times)})
        elif command == "reset":  # warm-up over: count duplicates and stale results from here on
            for subscriber in subscribers:
                subscriber.duplicates = subscriber.stale = 0
            pipe.send(None)
        elif command == "results":
            pipe.send(sum(s.results for s in subscribers))
        elif command == "cpu":
            pipe.send(cpu_seconds())
        elif command == "stats":
            pipe.send(
                {
                    "results": sum(s.results for s in subscribers),
                    "duplicates": sum(s.duplicates for s in subscribers),
                    "stale": sum(s.stale for s in subscribers),
                    "frame_bytes": [s.frame_bytes for s in subscribers if s.frame_bytes],
                    "digests": [(s.operation.name, key, d) for s in subscribers for key, d in s.digests.items()],
                    "problems": [problem for s in subscribers for problem in s.problems][:5],
                    "closed": sum(s.problems != [] and "closed by the server" in s.problems[-1] for s in subscribers),
                }
            )
        elif command == "close":
            await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            pipe.send(None)
            return


def cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system


def main(pipe: Connection) -> None:
    """Run a client process."""
    asyncio.run(serve(pipe))


class Clients:
    """The client processes, as the benchmark drives them."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")  # no inherited event loop, sockets or threads
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=main, args=(theirs,), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)

    def ask(self, commands: list[tuple[str, Any]]) -> list[Any]:
        """Send each client process its command (all at once), then return their answers."""
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return [pipe.recv() for pipe in self.pipes]

    def ask_all(self, command: str, argument: Any = None) -> list[Any]:
        return self.ask([(command, argument)] * len(self.pipes))

    def close(self) -> None:
        """Close every socket, then end the processes."""
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(("close", None))
        for pipe, process in zip(self.pipes, self.processes, strict=True):
            with contextlib.suppress(OSError, EOFError):
                if pipe.poll(60):
                    pipe.recv()
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join()
