"""What daphne holds for one WebSocket, told to the application: `scope["extensions"]["catalog.send_buffer"]`.

daphne writes every frame the application sends straight into the connection's Twisted
transport, which buffers without a bound once the kernel's send queue is full (daphne issue
#170): a client that stops reading makes the server hold everything sent to it. The
application cannot see that buffer through ASGI, so project.serve hands each WebSocket's
scope this view of it (graph.outbox bounds what a socket may hold with it).
"""

from __future__ import annotations

from typing import Any

SCOPE_KEY = "catalog.send_buffer"


class SendBuffer:
    """The bytes a connection's transport holds, not yet handed to the kernel."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: Any) -> None:
        self._protocol = protocol  # daphne's WebSocketProtocol (autobahn's)

    def pending(self) -> int:
        """Return the bytes written to the connection and not yet handed to the kernel.

        Twisted's FileDescriptor keeps them in dataBuffer (from offset on) and _tempDataBuffer
        (_tempDataLen bytes); no public API tells it (Twisted 26.10.0).
        """
        transport = self._protocol.transport
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

    def linger(self, seconds: float) -> None:
        """Keep the connection this long after the server's close frame, for the client to read up to it.

        autobahn drops it 1 s after the close frame unless the client answers; a client closed
        for reading too slowly finds the frame only behind what it has not read yet.
        """
        self._protocol.closeHandshakeTimeout = seconds
