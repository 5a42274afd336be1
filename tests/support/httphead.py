"""Reading an HTTP/1.1 message head off a socket, for the test servers and proxies."""

from __future__ import annotations

import socket


def read_head(sock: socket.socket, limit: int | None = None) -> tuple[bytes, bool]:
    """Receive until the blank line that ends a message head (``\\r\\n\\r\\n``).

    Returns ``(buffer, complete)``: everything received (the head and any bytes after it), and
    False when the peer closed first or the buffer grew past ``limit`` bytes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return buf, False
        buf += chunk
        if limit is not None and len(buf) > limit:
            return buf, False
    return buf, True
