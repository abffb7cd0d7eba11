"""Subscriber processes for the fan-out benchmark, and the handle the benchmark drives them with.

Each client process runs one event loop holding its share of the subscribers: lean
graphql-transport-ws clients on the `websockets` library, one socket and one subscription each.
A subscriber notes when each result arrives (`time.monotonic()`, on Linux one clock for every
process of the machine) under a key read from the result, so that the benchmark can ask
afterwards "when did each subscriber get round r's result?" without telling them in advance.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import multiprocessing
import os
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

SUBPROTOCOL = "graphql-transport-ws"
HANDSHAKE_TIMEOUT = 120  # a thousand sign-ins queue up on one server process


@dataclass(frozen=True)
class Plan:
    """What one client process opens: `count` sockets to each URL, one subscription each."""

    urls: list[tuple[str, int]]  # (ws://host:port/graphql, how many sockets)
    token: str
    kind: str  # "sourceEvents" or "dataLibrary"
    query: str
    # Handshakes in flight from this process. More would only queue at the server, and beyond
    # its listen backlog (50 in Twisted) new connections wait for TCP to retry them, seconds later.
    open_at_once: int


@dataclass
class Subscriber:
    """One socket with one subscription, and when each of its results arrived."""

    arrivals: dict[Any, float] = field(default_factory=dict)  # result key -> monotonic time
    results: int = 0
    stale: int = 0  # dataLibrary results computed before their round's mutation was sent
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)
    got: asyncio.Event = field(default_factory=asyncio.Event)  # set at every result


def result_key(kind: str, data: dict[str, Any], index: int) -> tuple[Any, dt.datetime | None]:
    """Return the key a result is filed under, and when the server computed it (dataLibrary only).

    sourceEvents: the marker the round's mutation wrote into the source, read from the event.
    dataLibrary: the result's position (0 is the first result): the counters need not change
    with the marker, so the result's generatedAt is checked against its round's start instead,
    and a late result of an earlier change cannot pass for this one.
    """
    if kind == "sourceEvents":
        source = data["sourceEvents"]["source"] or {}
        return source.get("scopeOfSubscription"), None
    return index, dt.datetime.fromisoformat(data["dataLibrary"]["generatedAt"])


async def receive(ws: ClientConnection, kind: str, subscriber: Subscriber, round_starts: dict[Any, float]) -> None:
    async for frame in ws:
        arrived = time.monotonic()
        message = json.loads(frame)
        if message.get("type") == "ping":
            await ws.send('{"type": "pong"}')
            continue
        payload = message.get("payload") or {}
        if message.get("type") != "next" or payload.get("errors"):
            subscriber.problems.append(f"{message.get('type')}: {str(payload)[:200]}")
            subscriber.got.set()
            continue
        key, generated_at = result_key(kind, payload["data"], subscriber.results)
        subscriber.results += 1
        if key in subscriber.arrivals:
            subscriber.duplicates += 1
        else:
            subscriber.arrivals[key] = arrived
        started = round_starts.get(key)
        if generated_at is not None and started is not None and generated_at.timestamp() < started:
            subscriber.stale += 1
        subscriber.got.set()


async def subscribe(url: str, plan: Plan, gate: asyncio.Semaphore) -> ClientConnection:
    """Open a socket, sign in with the token, start the subscription."""
    async with gate:
        ws = await websockets.connect(
            url,
            subprotocols=[SUBPROTOCOL],
            open_timeout=HANDSHAKE_TIMEOUT,
            # daphne pings and the library answers; pings from here that a busy server
            # answers late would close sockets mid-benchmark.
            ping_interval=None,
            max_queue=None,  # never stop reading from the socket: arrivals would be noted late
        )
        await ws.send(json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {plan.token}"}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), HANDSHAKE_TIMEOUT))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"connection_init answered with {ack}")
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": plan.query}}))
        return ws


async def until(subscribers: list[Subscriber], done: Any, seconds: float) -> None:
    """Wait until `done(subscriber)` holds (or it has a problem) for all, at most `seconds`."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            for subscriber in subscribers:
                while not done(subscriber) and not subscriber.problems:
                    subscriber.got.clear()
                    await subscriber.got.wait()


async def serve(pipe: Connection) -> None:
    """Obey the benchmark's commands until it says "close"; answer each one."""
    loop = asyncio.get_running_loop()
    sockets: list[ClientConnection] = []
    subscribers: list[Subscriber] = []
    tasks: list[asyncio.Task[None]] = []
    round_starts: dict[Any, float] = {}  # dataLibrary: result index -> wall time its mutation was sent
    while True:
        command, argument = await loop.run_in_executor(None, pipe.recv)
        if command == "open":
            plan: Plan = argument
            gate = asyncio.Semaphore(plan.open_at_once)
            opened = await asyncio.gather(
                *(subscribe(url, plan, gate) for url, count in plan.urls for _ in range(count)), return_exceptions=True
            )
            failures = [repr(ws) for ws in opened if isinstance(ws, BaseException)]
            for ws in opened:
                if not isinstance(ws, BaseException):
                    subscriber = Subscriber()
                    tasks.append(asyncio.create_task(receive(ws, plan.kind, subscriber, round_starts)))
                    sockets.append(ws)
                    subscribers.append(subscriber)
            pipe.send({"opened": len(sockets), "failures": failures[:5]})
        elif command == "ready":  # every subscriber has `count` results
            count, seconds = argument
            await until(subscribers, lambda s, count=count: s.results >= count, seconds)
            pipe.send(sum(s.results < count for s in subscribers))
        elif command == "round":  # the mutation of result `key` is sent at wall time `started`
            key, started = argument
            round_starts[key] = started
            pipe.send(None)
        elif command == "wait":  # every subscriber has the result filed under `key`
            key, seconds = argument
            await until(subscribers, lambda s, key=key: key in s.arrivals, seconds)
            times = [s.arrivals[key] for s in subscribers if key in s.arrivals]
            pipe.send({"times": times, "missing": len(subscribers) - len(times)})
        elif command == "cpu":
            pipe.send(cpu_seconds())
        elif command == "stats":
            pipe.send(
                {
                    "results": sum(s.results for s in subscribers),
                    "duplicates": sum(s.duplicates for s in subscribers),
                    "stale": sum(s.stale for s in subscribers),
                    "problems": [problem for s in subscribers for problem in s.problems][:5],
                    "closed": sum(ws.close_code is not None for ws in sockets),
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
