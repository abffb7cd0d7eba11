"""Run daphne with a graceful shutdown: `python -m project.serve [daphne's options] project.asgi:application`.

Written by hand because daphne has none: on SIGTERM Twisted stops the reactor at once, daphne
cancels every application, and WebSockets are dropped without a close frame, so clients cannot
tell a shutdown from a network failure. Here the first SIGTERM or SIGINT stops listening (new
connections are refused), sends every open WebSocket the close code 1001 (Going Away: clients
reconnect, to another process), waits until the connections are gone or SHUTDOWN_GRACE_SECONDS
pass, then stops the reactor as daphne always did (which cancels what remains) and exits with
status 0. A second signal stops at once.

It also listens with a backlog of LISTEN_BACKLOG (2048) instead of Twisted's 50.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import pprint
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

# daphne.server installs Twisted's asyncio reactor: it must be imported before the reactor is.
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import defer, reactor
from twisted.internet.task import LoopingCall

from project.sendbuffer import SCOPE_KEY as SEND_BUFFER
from project.sendbuffer import SendBuffer
from project.wsprotocol import CatalogWebSocketProtocol

logger = logging.getLogger(__name__)

GOING_AWAY = 1001  # RFC 6455
MESSAGE_LIMIT_FACTOR = 4  # autobahn's limit on a message, in GRAPHQL_MAX_REQUEST_BYTES
DEFAULT_GRACE_SECONDS = 10.0
DRAIN_CHECK_SECONDS = 0.1
# Twisted listens with a backlog of 50: when 1,000 sockets reconnected at once (a deploy), the
# accept queue overflowed thousands of times and clients waited for SYN retransmits (1 s, 3 s,
# 7 s...) or failed. 2048 holds such a storm while the reactor accepts.
DEFAULT_LISTEN_BACKLOG = 2048
SOMAXCONN = Path("/proc/sys/net/core/somaxconn")
# The Twisted endpoint types whose listen() takes a backlog ("fd:" adopts a listening socket).
_BACKLOG_ENDPOINTS = frozenset({"tcp", "tcp6", "ssl", "unix"})


def shutdown_grace_seconds(environ: Mapping[str, str]) -> float:
    """Return SHUTDOWN_GRACE_SECONDS, or stop with a message saying what is wrong with it."""
    value = environ.get("SHUTDOWN_GRACE_SECONDS", "").strip()
    if not value:
        return DEFAULT_GRACE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise SystemExit(f"SHUTDOWN_GRACE_SECONDS must be a number of seconds, 0 or more, not {value!r}.")
    return seconds


def listen_backlog(environ: Mapping[str, str]) -> int:
    """Return LISTEN_BACKLOG, or stop with a message saying what is wrong with it."""
    value = environ.get("LISTEN_BACKLOG", "").strip()
    if not value:
        return DEFAULT_LISTEN_BACKLOG
    try:
        backlog = int(value)
    except ValueError:
        backlog = 0
    if backlog < 1:
        raise SystemExit(f"LISTEN_BACKLOG must be a whole number of connections, 1 or more, not {value!r}.")
    return backlog


def kernel_backlog_limit() -> int | None:
    """Return net.core.somaxconn, the kernel's cap on every listen backlog (None: not Linux)."""
    try:
        return int(SOMAXCONN.read_text())
    except (OSError, ValueError):
        return None


def with_backlog(endpoints: Sequence[str], backlog: int) -> list[str]:
    """Add `backlog` to each Twisted endpoint description that listens and names none.

    daphne builds its endpoints as strings ("tcp:port=8000:interface=127.0.0.1") and gives
    them to Twisted's serverFromString, whose tcp, ssl and unix endpoints read `backlog=N`.
    """
    described = []
    for endpoint in endpoints:
        kind, _, options = endpoint.partition(":")
        if kind in _BACKLOG_ENDPOINTS and not any(part.startswith("backlog=") for part in options.split(":")):
            endpoint = f"{endpoint}:backlog={backlog}"
        described.append(endpoint)
    return described


class DrainingServer(Server):
    """daphne's Server, with its own SIGTERM and SIGINT handling instead of Twisted's."""

    def __init__(self, *args: Any, grace_seconds: float, backlog: int = DEFAULT_LISTEN_BACKLOG, **kwargs: Any) -> None:
        kwargs["endpoints"] = with_backlog(kwargs.get("endpoints") or [], backlog)
        super().__init__(*args, signal_handlers=False, **kwargs)
        # Said here, where daphne has set up logging: Linux silently caps every backlog.
        limit = kernel_backlog_limit()
        if limit is not None and backlog > limit:
            logger.warning(
                "LISTEN_BACKLOG is %d but the kernel caps every listen backlog at net.core.somaxconn = %d: "
                "the accept queue holds %d connections (raise net.core.somaxconn for more)",
                backlog,
                limit,
                limit,
            )
        self.grace_seconds = grace_seconds
        self.ports: list[Any] = []
        self.drain_started: float | None = None
        self.stopping = False
        self.closed_websockets: set[WebSocketProtocol] = set()
        self.drain_check = LoopingCall(self._drain_step)

    def run(self) -> None:
        reactor.callWhenRunning(self._install_signal_handlers)
        reactor.callWhenRunning(self._use_own_websocket_protocol)
        super().run()

    def _use_own_websocket_protocol(self) -> None:
        from django.conf import settings  # the application (Django) is loaded by now

        self.ws_factory.protocol = CatalogWebSocketProtocol
        # A message far over the service's limit is refused by autobahn before it is buffered
        # whole, with 1009 and a close frame instead of a reset; one a little over it reaches
        # the application, which answers 1009 with its own reason.
        limit = MESSAGE_LIMIT_FACTOR * settings.GRAPHQL_MAX_REQUEST_BYTES
        self.ws_factory.setProtocolOptions(failByDrop=False, maxMessagePayloadSize=limit, maxFramePayloadSize=limit)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        # Each WebSocket's application may see what its transport holds (project.sendbuffer).
        if scope.get("type") == "websocket" and getattr(protocol, "transport", None) is not None:
            extensions = scope.setdefault("extensions", {})
            extensions[SEND_BUFFER] = SendBuffer(protocol)
        return super().create_application(protocol, scope)

    def listen_success(self, port: Any) -> None:
        # The one place daphne hands out the listening ports; `self.listeners` holds Deferreds only.
        self.ports.append(port)
        super().listen_success(port)

    def _install_signal_handlers(self) -> None:
        # daphne made the reactor's event loop the current one before starting the reactor.
        loop = asyncio.get_event_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.drain_started is not None:
            logger.warning("Shutdown: %s again, stopping now", name)
            self._stop_once()
            return
        self.drain_started = time.monotonic()
        for port in self.ports:
            port.stopListening()
        logger.info(
            "Shutdown on %s: refusing new connections, closing %d WebSockets with %d, waiting up to %g s",
            name,
            sum(1 for protocol in self.connections if _is_open_websocket(protocol)),
            GOING_AWAY,
            self.grace_seconds,
        )
        self.drain_check.start(DRAIN_CHECK_SECONDS)

    def _drain_step(self) -> None:
        # Every step, not once: a socket still in its opening handshake when the signal came
        # is told to go away as soon as the application accepts it.
        for protocol in list(self.connections):
            if _is_open_websocket(protocol):
                # daphne's own way to send a code autobahn's sendClose() refuses (it allows
                # only 1000 and 3000-4999): an autobahn internal that daphne uses for 1011.
                protocol.sendCloseFrame(code=GOING_AWAY)
                self.closed_websockets.add(protocol)
        remaining = self._unfinished_connections()
        elapsed = time.monotonic() - self.drain_started
        if remaining and elapsed < self.grace_seconds:
            return
        if remaining:
            logger.warning(
                "Shutdown: %d WebSockets closed with %d; the grace period of %g s ran out, connections left: %d",
                len(self.closed_websockets),
                GOING_AWAY,
                self.grace_seconds,
                remaining,
            )
        else:
            logger.info(
                "Shutdown: %d WebSockets closed with %d; every connection finished (%.1f s)",
                len(self.closed_websockets),
                GOING_AWAY,
                elapsed,
            )
        self._stop_once()

    def _stop_once(self) -> None:
        # The reactor raises when stopped twice, and a signal may come while it shuts down.
        if self.drain_check.running:
            self.drain_check.stop()
        if not self.stopping:
            self.stopping = True
            self.stop()  # daphne's shutdown trigger cancels the applications that are left

    def kill_all_applications(self) -> defer.Deferred:
        """Cancel the applications still running, and wait for them: the reactor's shutdown waits too."""
        # daphne's own reads details["application_instance"] of every connection and raises
        # KeyError for one that has none (a request still arriving; the request that upgraded to
        # a WebSocket, until application_checker reaps it a second later): then it cancels
        # nothing, and says so nowhere, Twisted's log being discarded at verbosity 1.
        running = [
            details["application_instance"]
            for details in self.connections.values()
            if "application_instance" in details and not details["application_instance"].done()
        ]
        for application in running:
            application.cancel()
        logger.info("Killed %i pending application instances", len(running))  # daphne's own words
        waiting = defer.Deferred.fromFuture(asyncio.gather(*running))
        waiting.addErrback(lambda _: None)
        return waiting

    def _unfinished_connections(self) -> int:
        # `self.connections` is daphne's internal table: {protocol: {"disconnected": t,
        # "application_instance": future}}. A connection is finished once its client is gone
        # and its application has returned (a consumer leaves its groups on the way out).
        return sum(
            1
            for details in list(self.connections.values())
            if "disconnected" not in details
            or ("application_instance" in details and not details["application_instance"].done())
        )


def _is_open_websocket(protocol: object) -> bool:
    return isinstance(protocol, WebSocketProtocol) and protocol.state == WebSocketProtocol.STATE_OPEN


class _Formatted:
    """A value formatted only when a log line shows it (see _lazy_autobahn_logging)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return format(pprint.pformat(self.value), spec)


def _lazy_autobahn_logging() -> None:
    """Make autobahn format its per-connection debug dump only when debug logging shows it.

    autobahn 26.10.2 (WebSocketProtocol._connectionMade) calls pprint.pformat on its 29
    settings for every new connection, for a log.debug line that is off: about 0.7 ms of CPU per
    connection, most of what a WebSocket handshake costs here. txaio formats a line's arguments
    only when it is emitted, so a value that formats itself then costs nothing otherwise.
    """
    from autobahn.websocket import protocol  # after daphne has installed its reactor

    protocol.pformat = _Formatted


def main(argv: list[str]) -> None:
    """Run daphne's command line with the draining server."""
    _lazy_autobahn_logging()
    cli = CommandLineInterface()
    cli.server_class = functools.partial(
        DrainingServer, grace_seconds=shutdown_grace_seconds(os.environ), backlog=listen_backlog(os.environ)
    )
    cli.run(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
