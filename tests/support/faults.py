"""A TCP proxy for the tests that cuts the way to a service on cue, and restores it.

Written by hand, in threads of the standard library: Toxiproxy does this well but needs its
server binary running beside the tests, which this machine (and CI) does not have; the small
Python packages for flaky networks (poorconn and the like) patch a server's own listening
socket, and cannot stand in front of a PostgreSQL that is already running nor cut the
connections that are already open. A page of sockets does both.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

_CHUNK = 65536
# SO_LINGER on, 0 s: close() resets the connection (RST) instead of ending it politely,
# as a network that is gone looks to both ends.
_RESET = struct.pack("ii", 1, 0)


class TcpProxy:
    """Forward 127.0.0.1:`port` to `host`:`target_port` until cut; use as a context manager.

    `cut()` resets every open connection and every new one at once (the database is gone);
    `stall()` resets the open ones and holds new ones open and silent (a host that drops
    packets: a client waits for its own timeout); `restore()` forwards new connections again.
    """

    def __init__(self, host: str, target_port: int) -> None:
        self.target = (host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._mode = "forward"  # or "cut", "stall"
        self._acceptor = threading.Thread(target=self._accept_forever, name="tcp-proxy", daemon=True)

    def __enter__(self) -> TcpProxy:
        self._acceptor.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def cut(self) -> None:
        """Reset every open connection, and each new one as soon as it is accepted."""
        self._switch("cut")

    def stall(self) -> None:
        """Reset every open connection; hold each new one open without forwarding a byte."""
        self._switch("stall")

    def restore(self) -> None:
        """Forward new connections again (the held ones are reset)."""
        self._switch("forward")

    def close(self) -> None:
        """Stop listening and reset every connection."""
        self._switch("cut")
        # shutdown() wakes the acceptor's accept() with an OSError; close() alone would not.
        _shut(self._listener)
        self._acceptor.join(timeout=5)

    def _switch(self, mode: str) -> None:
        with self._lock:
            self._mode = mode
            sockets, self._open = self._open, set()
        for sock in sockets:
            _reset(sock)

    def _accept_forever(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # the listener was closed
                return
            with self._lock:
                mode = self._mode
                if mode != "cut":
                    self._open.add(client)  # a stalled one is reset by the next switch
            if mode == "cut":
                _reset(client)
            elif mode == "forward":
                threading.Thread(target=self._forward, args=(client,), daemon=True).start()

    def _forward(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        with self._lock:
            if client not in self._open:  # cut while connecting
                _reset(upstream)
                return
            self._open.add(upstream)
        threading.Thread(target=_pump, args=(upstream, client), daemon=True).start()
        _pump(client, upstream)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):  # reset by cut(), or by either end
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    for sock in (source, sink):
        _shut(sock)


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    _shut(sock)


def _shut(sock: socket.socket) -> None:
    # shutdown() first: close() alone does not wake a thread blocked in recv() on the socket.
    with contextlib.suppress(OSError):  # not connected, or already closed
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
