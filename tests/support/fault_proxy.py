"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of a real registry.

Each client request is read (head + ``Content-Length`` body), matched against the
rules in order, and either answered with an injected fault or forwarded to the
upstream on a fresh connection (``Connection: close`` both ways, so one request
per connection). A rule lets ``skip`` matching requests through, then fires at most ``times`` times. Faults:

* ``status``: answer ``status`` (e.g. 503, or 429 with ``retry_after``) without forwarding;
* ``reset_request``: read ``after_bytes`` of the request body, then reset the connection (RST);
* ``reset_response``: forward, relay ``after_bytes`` of the response *body*, then reset.

The ``Host`` header is kept, so registry ``Location`` headers point back at the proxy.
Every request is logged as (method, path, action). Bounded: no retries of its own.
"""

from __future__ import annotations

import re
import socket
import socketserver
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class Fault:
    """Inject ``kind`` for requests whose method and path match (``path`` is a regex search)."""

    kind: str                      # "status" | "reset_request" | "reset_response"
    method: str = ".*"
    path: str = ".*"
    status: int = 503
    retry_after: int | None = None
    after_bytes: int = 0
    times: int = 1
    skip: int = 0                  # let this many matching requests through first
    fired: int = 0
    seen: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.fired < self.times and re.fullmatch(self.method, method) is not None
                and re.search(self.path, path) is not None)


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for f in self.faults:
                if f.matches(method, path):
                    f.seen += 1
                    if f.seen <= f.skip:
                        continue
                    f.fired += 1
                    return f
            return None

    def _record(self, method: str, path: str, action: str) -> None:
        with self._lock:
            self.log.append((method, path, action))

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    proxy._handle(self.request)
                except OSError:
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- per connection -------------------------------------------------------------
    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            if len(buf) > 1 << 20:
                return
        head, _, body = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = [ln for ln in lines[1:] if ln]
        length = 0
        for h in headers:
            k, _, v = h.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        fault = self._pick(method, target)

        if fault and fault.kind == "reset_request":
            while len(body) < min(length, fault.after_bytes):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            self._record(method, target, f"reset_request@{len(body)}")
            _reset(conn)
            return
        while len(body) < length:
            chunk = conn.recv(min(1 << 20, length - len(body)))
            if not chunk:
                return
            body += chunk
        if fault and fault.kind == "status":
            self._record(method, target, f"status {fault.status}")
            extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after is not None else ""
            msg = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'
            conn.sendall((f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(msg)}\r\n{extra}Connection: close\r\n\r\n").encode() + msg)
            conn.close()
            return
        kept = [h for h in headers if h.partition(":")[0].strip().lower() not in ("connection", "keep-alive")]
        out = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
        up = socket.create_connection(self.upstream, timeout=30)
        try:
            up.sendall(out)
            limit = fault.after_bytes if fault and fault.kind == "reset_response" else None
            self._record(method, target, "reset_response" if limit is not None else "forward")
            _relay_response(up, conn, limit)
        finally:
            up.close()
        if limit is not None:
            _reset(conn)
        else:
            conn.close()


def _relay_response(up: socket.socket, conn: socket.socket, body_limit: int | None) -> None:
    """Copy the upstream response to the client; with ``body_limit`` stop after that many body bytes."""
    head_done = False
    pending = b""
    sent_body = 0
    while True:
        chunk = up.recv(65536)
        if not chunk:
            if pending:
                conn.sendall(pending)
            return
        if body_limit is None:
            conn.sendall(chunk)
            continue
        if not head_done:
            pending += chunk
            if b"\r\n\r\n" not in pending:
                continue
            head, _, rest = pending.partition(b"\r\n\r\n")
            conn.sendall(head + b"\r\n\r\n")
            head_done, pending, chunk = True, b"", rest
        take = chunk[: max(0, body_limit - sent_body)]
        if take:
            conn.sendall(take)
            sent_body += len(take)
        if sent_body >= body_limit:
            return


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) so the peer sees 'connection reset'."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        conn.close()
