"""The HTTP protocol of a multi-process server, with Nagle's algorithm off on every connection.

asyncio turns TCP_NODELAY on only for sockets it can tell are TCP, and the listening socket
uvicorn shares between processes does not say so (protocol 0): on a kept-alive connection,
Nagle's algorithm and the client's delayed ACK then hold each answer back by about 40 ms.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class NoDelayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass  # not a TCP socket after all; the answer is only slower
        super().connection_made(transport)
