"""What the kernel says about a listening TCP socket: its backlog, as `ss -ltn` shows it.

Asked over netlink's sock_diag, the interface `ss` itself reads, so that the tests need no
tool installed (Linux only). For a socket in the LISTEN state the kernel reports the length
of its accept queue as the "receive queue" and the queue's limit, the backlog the process
asked for capped at net.core.somaxconn, as the "send queue": `ss -ltn`'s Recv-Q and Send-Q.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
NLMSG_ERROR = 2
NLMSG_DONE = 3
TCP_LISTEN = 10

_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr
# struct inet_diag_req_v2 up to its inet_diag_sockid, whose fields a dump ignores (zeros)
_REQUEST = struct.Struct("=BBBBI48x")
_MESSAGE_START = struct.Struct("=BBBB")  # struct inet_diag_msg: family, state, timer, retrans
_PORTS = struct.Struct("!HH")  # its sockid's source and destination port, in network order
_QUEUES = struct.Struct("=IIIII")  # expires, rqueue, wqueue, uid, inode, after the 48-byte sockid


@dataclass(frozen=True)
class Listener:
    family: socket.AddressFamily
    port: int
    queued: int  # connections waiting to be accepted (Recv-Q)
    backlog: int  # the accept queue's limit (Send-Q)


def tcp_listeners(port: int) -> list[Listener]:
    """Return the TCP sockets listening on `port`, IPv4 and IPv6, as the kernel reports them."""
    found = []
    for family in (socket.AF_INET, socket.AF_INET6):
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as diag:
            request = _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN)
            diag.send(
                _HEADER.pack(_HEADER.size + len(request), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0)
                + request
            )
            found += [listener for listener in _replies(diag) if listener.port == port]
    return found


def _replies(diag: socket.socket) -> list[Listener]:
    listeners = []
    while True:
        data = diag.recv(65536)
        offset = 0
        while offset + _HEADER.size <= len(data):
            length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
            if kind == NLMSG_DONE:
                return listeners
            if kind == NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", data, offset + _HEADER.size)
                raise OSError(-code, "sock_diag refused the request")
            body = offset + _HEADER.size
            family, state, _, _ = _MESSAGE_START.unpack_from(data, body)
            sport, _ = _PORTS.unpack_from(data, body + _MESSAGE_START.size)
            _, queued, backlog, _, _ = _QUEUES.unpack_from(data, body + _MESSAGE_START.size + 48)
            if state == TCP_LISTEN:
                listeners.append(Listener(socket.AddressFamily(family), sport, queued, backlog))
            offset += (length + 3) & ~3  # NLMSG_ALIGN
