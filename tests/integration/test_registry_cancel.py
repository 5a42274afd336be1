"""RegistryClient.cancel() from another thread aborts transfers at once, through a fault proxy
in front of a real docker-registry: a throttled upload, a stalled download, a retry backoff.
After cancelling, no request reaches the proxy and every call raises Cancelled."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading
import time

import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.cancel import Cancelled, cancel_all
from executor.registry.client import OCI_MANIFEST, RegistryClient, RegistryOptions
from tests.support.fault_proxy import Fault, FaultProxy

pytestmark = pytest.mark.integration


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture
def proxy(registry):
    h, p = registry.host.split(":")
    with FaultProxy((h, int(p))) as px:
        yield px


def client_for(proxy: FaultProxy, **kw) -> RegistryClient:
    return RegistryClient(RegistryOptions(insecure_registries=frozenset({proxy.host}), **kw))


class InThread:
    """Runs ``fn`` on a thread; ``.error`` is what it raised, ``.done_at`` when it ended."""

    def __init__(self, fn):
        self.error: BaseException | None = None
        self.done_at: float | None = None

        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - inspected by the test
                self.error = e
            self.done_at = time.monotonic()

        self.t = threading.Thread(target=run, daemon=True)
        self.t.start()

    def join(self, timeout: float) -> None:
        self.t.join(timeout)
        assert not self.t.is_alive(), "the transfer did not stop"


def wait_until(cond, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def test_cancel_aborts_an_upload_in_flight_and_refuses_new_requests(proxy):
    ref = parse_reference(f"{proxy.host}/cancel/up:v1")
    data = os.urandom(8 << 20)
    proxy.add(Fault("throttle", "PATCH|PUT", "/blobs/uploads/", rate=1 << 20, times=100))
    c = client_for(proxy, chunk_size=4 << 20, push_retry=5)
    job = InThread(lambda: c.upload_blob(ref, data, sha(data), len(data)))
    wait_until(lambda: proxy.body_bytes > 1 << 20)
    t0 = time.monotonic()
    c.cancel(signal.SIGTERM)
    job.join(5)
    assert job.done_at - t0 < 1.0, job.done_at - t0
    assert isinstance(job.error, Cancelled) and isinstance(job.error, RegistryError), repr(job.error)
    assert job.error.exit_code == 143 and "SIGTERM" in str(job.error)
    seen = len(proxy.started)
    for call in (lambda: c.blob_exists(ref, sha(data)), lambda: c.put_manifest(ref, b"{}", OCI_MANIFEST),
                 lambda: c.get_manifest(ref), lambda: c.ping(proxy.host)):
        with pytest.raises(Cancelled):
            call()
    time.sleep(0.2)
    assert len(proxy.started) == seen, proxy.started[seen:]       # nothing new reached the proxy
    assert c.cancelled
    c.close()


def test_cancel_wakes_a_download_stalled_mid_body(proxy, registry):
    data = os.urandom(300 * 1024)
    with RegistryClient(RegistryOptions(insecure_registries=frozenset({registry.host}))) as direct:
        direct.upload_blob(parse_reference(f"{registry.host}/cancel/dl"), data, sha(data), len(data))
    proxy.add(Fault("stall_response", "GET", "/blobs/sha256:", after_bytes=100 * 1024, times=1))
    c = client_for(proxy)                                        # the default 60 s timeout
    job = InThread(lambda: c.fetch_blob(parse_reference(f"{proxy.host}/cancel/dl"), sha(data), io.BytesIO()))
    wait_until(lambda: any(a == "stall_response" for _, _, a in proxy.log))
    time.sleep(0.3)
    t0 = time.monotonic()
    c.cancel()
    job.join(5)
    assert job.done_at - t0 < 1.0 and isinstance(job.error, Cancelled), repr(job.error)
    assert job.error.exit_code == 1                               # no signal: a plain failure
    c.close()


def test_cancel_ends_a_retry_backoff(proxy):
    proxy.add(Fault("status", "GET", "/manifests/", status=503, retry_after=30, times=10))
    c = client_for(proxy)
    job = InThread(lambda: c.get_manifest(parse_reference(f"{proxy.host}/cancel/backoff:v1")))
    wait_until(lambda: any(a == "status 503" for _, _, a in proxy.log))
    time.sleep(0.2)
    t0 = time.monotonic()
    assert cancel_all(signal.SIGINT) >= 1                         # what the CLI's handler calls
    job.join(5)
    assert job.done_at - t0 < 1.0 and isinstance(job.error, Cancelled), repr(job.error)
    assert job.error.exit_code == 130
    assert sum(1 for _, _, a in proxy.log if a == "status 503") == 1
    c.close()
