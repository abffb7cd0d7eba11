"""daphne's WebSocket protocol, held to the close codes and reasons the service promises (daphne 4.2.3).

- A close the application asks for carries its reason: daphne's serverClose(code) drops it,
  so a client closed with 4403 could not tell "token expired" from "not signed in".
- Any close code is sent: autobahn's sendClose() accepts only 1000 and 3000-4999, so 1009 (a
  message over GRAPHQL_MAX_REQUEST_BYTES) made daphne fail the application with 1011. Other
  codes go through sendCloseFrame(), the autobahn call daphne itself uses for 1011.
- A client that stops answering pings gets 4509 and a reason, where autobahn reset the TCP
  connection: it has not read the ping, being slow or stalled, and is told what graph.outbox
  tells a client that reads too slowly (reconnect, and resume); the connection lingers for it
  to read up to the close frame.

project.serve makes its WebSocket factory build these, and has autobahn close a connection
whose message is far over the limit with 1009 and a close frame (failByDrop off) before
buffering it all, where it reset the connection (a 4 MiB message).
"""

from __future__ import annotations

import logging

from daphne.ws_protocol import WebSocketProtocol

logger = logging.getLogger(__name__)

REASON_BYTES = 123  # RFC 6455: a close frame's payload is at most 125 bytes, 2 of them the code


class CatalogWebSocketProtocol(WebSocketProtocol):
    """daphne's protocol, sending every close code with its reason (see the module's docstring)."""

    def handle_reply(self, message: dict) -> None:
        if message.get("type") == "websocket.close" and self.state != self.STATE_CONNECTING:
            self.serverClose(code=message.get("code"), reason=message.get("reason"))
            return
        super().handle_reply(message)

    def serverClose(self, code: int | None = None, reason: str | None = None) -> None:  # noqa: N802 (daphne's name)
        code = 1000 if code is None else code
        text = _clipped(reason or "")
        if code == 1000 or 3000 <= code <= 4999:
            self.sendClose(code=code, reason=text or None)
        else:
            self.sendCloseFrame(code=code, reasonUtf8=text.encode() or None)

    def onAutoPingTimeout(self) -> None:  # noqa: N802 (autobahn's name)
        if self.state != self.STATE_OPEN:
            super().onAutoPingTimeout()
            return
        from graph.metrics import SLOW_CLIENT_CLOSES  # the application (Django) is loaded by now
        from graph.outbox import CLOSE_LINGER_SECONDS, SLOW_CLIENT, SLOW_CLIENT_REASON

        self.autoPingTimeoutCall = None
        self.closeHandshakeTimeout = CLOSE_LINGER_SECONDS
        SLOW_CLIENT_CLOSES.inc()
        logger.warning("Closing a WebSocket with %d: it did not answer a ping in time", SLOW_CLIENT)
        self.sendClose(code=SLOW_CLIENT, reason=SLOW_CLIENT_REASON)


def _clipped(reason: str) -> str:
    """Return `reason` cut to what a close frame holds, never in the middle of a character."""
    return reason.encode()[:REASON_BYTES].decode(errors="ignore")
