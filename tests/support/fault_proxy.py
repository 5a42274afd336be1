"""A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of a real registry.

Each client request is read (head + ``Content-Length`` body), matched against the
rules in order, and either answered with an injected fault or forwarded to the
upstream on a fresh connection (``Connection: close`` both ways, so one request
per connection). A rule lets ``skip`` matching requests through, then fires at most
``times`` times. Faults (``after_bytes`` counts body bytes, never the head):

* ``status``: answer ``status`` (e.g. 503, or 429 with ``retry_after``) without forwarding, with
  ``body`` (JSON) when given, else a distribution ``UNAVAILABLE`` error;
* ``refuse_existing``: an immutable-tag rule in front of the registry, as Harbor's and ECR's:
  the path (a manifest PUT by tag) is first HEADed upstream; when the upstream has it, answer
  ``status`` with ``body`` (the rule fires); else forward (not counted in ``times``);
* ``reset_request``: read ``after_bytes`` of the request body, then reset the connection (RST);
* ``reset_response``: forward, relay ``after_bytes`` of the response *body*, then reset;
* ``truncate``: forward, relay ``after_bytes`` of the response body, then close cleanly (FIN),
  so the client sees a body shorter than its ``Content-Length``;
* ``corrupt``: forward, but flip the low bit of response body byte number ``after_bytes``
  (length and headers unchanged: only a digest check can notice);
* ``corrupt_request``: the same for request body byte ``after_bytes`` (an upload);
* ``stall_response``: forward, relay ``after_bytes`` of the response body, then send nothing
  for ``stall_s`` seconds (or until the proxy stops) while keeping the connection open;
* ``stall_request``: read ``after_bytes`` of the request body, then stop reading for
  ``stall_s`` seconds (the client's writes block once the socket buffers are full);
* ``throttle``: forward, reading the request body and relaying the response at ``rate``
  bytes per second (a slow link).

The ``Host`` header is kept, so registry ``Location`` headers point back at the proxy.
Every request is logged as ``(method, path, action)`` in :attr:`FaultProxy.log`
(``action`` is ``"forward"`` for pass-through); :attr:`FaultProxy.started` has
``(time.monotonic(), method, path)`` of every request head received, and
:attr:`FaultProxy.body_bytes` counts request-body bytes read so far (all requests).
Bounded: no retries of its own; stalls end when the proxy stops.
"""

from __future__ import annotations

import re
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field

from tests.support.httphead import read_head

KINDS = frozenset({"status", "refuse_existing", "reset_request", "reset_response", "truncate", "corrupt",
                   "corrupt_request",
                   "stall_response", "stall_request", "throttle"})

DEFAULT_FAULT_BODY = b'{"errors":[{"code":"UNAVAILABLE","message":"injected fault"}]}'


@dataclass
class Fault:
    """Inject ``kind`` for requests whose method and path match (``method`` a regex
    full match, ``path`` a regex search). See the module docstring for the kinds."""

    kind: str
    method: str = ".*"
    path: str = ".*"
    status: int = 503
    retry_after: int | None = None
    after_bytes: int = 0
    times: int = 1
    skip: int = 0                  # let this many matching requests through first
    rate: float = 1 << 20          # throttle: bytes per second
    stall_s: float = 3600.0        # stall_*: how long to hold the connection silent
    body: bytes | None = None      # status / refuse_existing: the answer's JSON body
    fired: int = 0
    seen: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")

    def matches(self, method: str, path: str) -> bool:
        return (self.fired < self.times and re.fullmatch(self.method, method) is not None
                and re.search(self.path, path) is not None)


@dataclass
class FaultProxy:
    upstream: tuple[str, int]
    faults: list[Fault] = field(default_factory=list)
    log: list[tuple[str, str, str]] = field(default_factory=list)
    started: list[tuple[float, str, str]] = field(default_factory=list)
    body_bytes: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None
        self._stopping = threading.Event()

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.server_address[1]}"

    def add(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def _pick(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.started.append((time.monotonic(), method, path))
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

    def _count(self, n: int) -> None:
        with self._lock:
            self.body_bytes += n

    def start(self) -> "FaultProxy":
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                try:
                    proxy._handle(self.request)
                except OSError:
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._stopping.clear()
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()          # ends stalls
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FaultProxy":
        return self.start() if self._server is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- per connection -------------------------------------------------------------
    def _recv_body(self, conn: socket.socket, body: bytes, want: int, rate: float | None) -> bytes | None:
        """Read the request body until ``want`` bytes (``body`` holds what came with the head);
        at ``rate`` bytes/s when set. None when the client went away."""
        self._count(len(body))
        t0 = time.monotonic()
        got_at_t0 = len(body)
        while len(body) < want:
            piece = min(1 << 20, want - len(body))
            if rate:
                piece = min(piece, max(1024, int(rate / 20)))
            chunk = conn.recv(piece)
            if not chunk:
                return None
            body += chunk
            self._count(len(chunk))
            if rate:
                ahead = (len(body) - got_at_t0) / rate - (time.monotonic() - t0)
                if ahead > 0 and self._stopping.wait(ahead):
                    return None
        return body

    def _handle(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        buf, complete = read_head(conn, limit=1 << 20)
        if not complete:
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
        kind = fault.kind if fault else None

        if kind in ("reset_request", "stall_request"):
            got = self._recv_body(conn, body, min(length, fault.after_bytes), None)
            n = len(got if got is not None else body)
            self._record(method, target, f"{kind}@{n}")
            if kind == "stall_request":
                self._stopping.wait(fault.stall_s)
                conn.close()
            else:
                _reset(conn)
            return
        body = self._recv_body(conn, body, length, fault.rate if kind == "throttle" else None)
        if body is None:
            return
        if kind == "corrupt_request" and fault.after_bytes < len(body):
            i = fault.after_bytes
            body = body[:i] + bytes([body[i] ^ 0x01]) + body[i + 1:]
        if kind == "refuse_existing" and not self._upstream_has(target, headers):
            with self._lock:
                fault.fired -= 1
            kind = fault = None
        if kind in ("status", "refuse_existing"):
            self._record(method, target, f"{kind} {fault.status}")
            extra = f"Retry-After: {fault.retry_after}\r\n" if fault.retry_after is not None else ""
            msg = fault.body if fault.body is not None else DEFAULT_FAULT_BODY
            conn.sendall((f"HTTP/1.1 {fault.status} Injected\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(msg)}\r\n{extra}Connection: close\r\n\r\n").encode() + msg)
            conn.close()
            return
        kept = [h for h in headers if h.partition(":")[0].strip().lower() not in ("connection", "keep-alive")]
        out = "\r\n".join([lines[0], *kept, "Connection: close", "", ""]).encode("latin-1") + body
        up = socket.create_connection(self.upstream, timeout=30)
        try:
            up.sendall(out)
            self._record(method, target, kind or "forward")
            if fault is None or kind == "corrupt_request":
                _relay_plain(up, conn)
                conn.close()
                return
            self._relay_body(up, conn, fault)
        finally:
            up.close()
        if kind == "reset_response":
            _reset(conn)
        else:
            conn.close()

    def _upstream_has(self, target: str, headers: list[str]) -> bool:
        """True when the upstream answers 200 to a HEAD of ``target`` (with the client's Host and
        Authorization headers, accepting every manifest type)."""
        import http.client
        keep = {"host", "authorization"}
        h = {k.strip(): v.strip() for k, _, v in (x.partition(":") for x in headers) if k.strip().lower() in keep}
        h["Accept"] = ", ".join(("application/vnd.oci.image.manifest.v1+json",
                                 "application/vnd.oci.image.index.v1+json",
                                 "application/vnd.docker.distribution.manifest.v2+json",
                                 "application/vnd.docker.distribution.manifest.list.v2+json"))
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request("HEAD", target, headers=h)
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def _relay_body(self, up: socket.socket, conn: socket.socket, fault: Fault) -> None:
        """Relay the upstream response applying ``fault`` to the body bytes."""
        pending, complete = read_head(up)
        if not complete:
            conn.sendall(pending)
            return
        head, _, rest = pending.partition(b"\r\n\r\n")
        conn.sendall(head + b"\r\n\r\n")
        limit = fault.after_bytes if fault.kind in ("reset_response", "truncate", "stall_response") else None
        sent = 0
        t0 = time.monotonic()
        chunk = rest
        while True:
            if chunk:
                if limit is not None:
                    chunk = chunk[: max(0, limit - sent)]
                if fault.kind == "corrupt" and sent <= fault.after_bytes < sent + len(chunk):
                    i = fault.after_bytes - sent
                    chunk = chunk[:i] + bytes([chunk[i] ^ 0x01]) + chunk[i + 1:]
                step = 16384 if fault.kind == "throttle" else max(1, len(chunk))
                for off in range(0, len(chunk), step):
                    piece = chunk[off:off + step]
                    conn.sendall(piece)
                    sent += len(piece)
                    if fault.kind == "throttle":
                        ahead = sent / fault.rate - (time.monotonic() - t0)
                        if ahead > 0 and self._stopping.wait(ahead):
                            return
            if limit is not None and sent >= limit:
                break
            chunk = up.recv(65536)
            if not chunk:
                return
        if fault.kind == "stall_response":
            self._stopping.wait(fault.stall_s)


def _relay_plain(up: socket.socket, conn: socket.socket) -> None:
    """Copy the upstream response to the client unchanged."""
    while True:
        chunk = up.recv(65536)
        if not chunk:
            return
        conn.sendall(chunk)


def _reset(conn: socket.socket) -> None:
    """Close with RST (SO_LINGER 0) so the peer sees 'connection reset'."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        conn.close()
