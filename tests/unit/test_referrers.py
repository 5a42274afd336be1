"""executor.referrers.attach against a small in-process fake registry, for the paths the test
registry (Debian's distribution 2.8: no referrers API, If-Match ignored) cannot show: a
registry with the OCI 1.1 referrers API (``OCI-Subject`` on the artifact PUT, ``GET
/v2/<name>/referrers/<digest>``) gets no referrers tag; one that honours ``If-Match`` answers a
stale update with 412 and the entry is merged again; one that ignores it but lets another
writer replace the index is caught by the read-back. The tag-schema path itself is proven
against the real registry in tests/integration/test_supply_chain*.py."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.referrers import ATTEMPTS, attach, list_referrers, referrers_tag
from executor.registry.client import RegistryClient
from executor.registry.options import RegistryOptions

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SUBJECT = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "ab" * 32, "size": 321}
TAG = referrers_tag(SUBJECT["digest"])


class FakeRegistry(ThreadingHTTPServer):
    """Blobs, manifests by tag or digest (ETag = quoted digest), optionally the referrers API
    and If-Match / If-None-Match on manifest PUTs; ``on_tag_put`` / ``after_tag_put`` run
    before / after a tag PUT is applied (to play a concurrent writer)."""

    def __init__(self, referrers_api: bool, conditional: bool):
        super().__init__(("127.0.0.1", 0), Handler)
        self.referrers_api, self.conditional = referrers_api, conditional
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}   # digest -> (bytes, media type)
        self.tags: dict[str, str] = {}                      # tag -> digest
        self.puts: list[tuple[str, dict]] = []              # (ident, headers) of manifest PUTs
        self.on_tag_put = None
        self.after_tag_put = None
        self.lock = threading.Lock()

    def store(self, data: bytes, media_type: str, tag: str | None = None) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        self.manifests[digest] = (data, media_type)
        if tag:
            self.tags[tag] = digest
        return digest


class Handler(BaseHTTPRequestHandler):
    server: FakeRegistry

    def log_message(self, *a):  # quiet
        pass

    def _send(self, code: int, body: bytes = b"", headers: dict | None = None):
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self):
        s = self.server
        if self.path == "/v2/":
            return self._send(200, b"{}")
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs|referrers)/([^/?]+)", self.path)
        if not m:
            return self._send(404)
        _, kind, ident = m.groups()
        with s.lock:
            if kind == "referrers":
                if not s.referrers_api:
                    return self._send(404)
                found = [{"mediaType": mt, "digest": d, "size": len(b), "artifactType": json.loads(b)["artifactType"]}
                         for d, (b, mt) in s.manifests.items() if json.loads(b).get("subject", {}).get("digest") == ident]
                body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}).encode()
                return self._send(200, body, {"Content-Type": OCI_INDEX})
            if kind == "blobs":
                return self._send(200, s.blobs[ident]) if ident in s.blobs else self._send(404)
            digest = s.tags.get(ident, ident)
            if digest not in s.manifests:
                return self._send(404)
            data, mt = s.manifests[digest]
            return self._send(200, data, {"Content-Type": mt, "Docker-Content-Digest": digest, "ETag": f'"{digest}"'})

    do_HEAD = do_GET

    def do_POST(self):
        self._body()
        self._send(202, headers={"Location": "/upload/1"})

    def do_PUT(self):
        s = self.server
        body = self._body()
        if self.path.startswith("/upload/"):
            digest = self.path.split("digest=")[1].replace("%3A", ":")
            s.blobs[digest] = body
            return self._send(201, headers={"Docker-Content-Digest": digest})
        m = re.fullmatch(r"/v2/(.+)/manifests/([^/?]+)", self.path)
        ident = m.group(2)
        s.puts.append((ident, dict(self.headers)))
        is_tag = not ident.startswith("sha256:")
        if is_tag and s.on_tag_put:
            s.on_tag_put()
        with s.lock:
            if is_tag and s.conditional:
                current = s.tags.get(ident)
                if_match, none_match = self.headers.get("If-Match"), self.headers.get("If-None-Match")
                if (if_match and if_match != f'"{current}"') or (none_match == "*" and current is not None):
                    return self._send(412)
            digest = s.store(body, self.headers["Content-Type"], ident if is_tag else None)
            headers = {"Docker-Content-Digest": digest}
            subject = json.loads(body).get("subject")
            if s.referrers_api and subject:
                headers["OCI-Subject"] = subject["digest"]
        if is_tag and s.after_tag_put:
            s.after_tag_put()
        self._send(201, headers=headers)


@pytest.fixture
def make_registry():
    servers = []

    def make(referrers_api: bool = False, conditional: bool = False):
        srv = FakeRegistry(referrers_api, conditional)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        host = f"127.0.0.1:{srv.server_address[1]}"
        client = RegistryClient(RegistryOptions(insecure_registries=frozenset({host})))
        return srv, client, parse_reference(f"{host}/app/x:v1")

    yield make
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _tag_entries(srv: FakeRegistry) -> list[str]:
    data, _ = srv.manifests[srv.tags[TAG]]
    return [d["digest"] for d in json.loads(data)["manifests"]]


def test_registry_with_referrers_api_gets_no_tag(make_registry):
    srv, client, repo = make_registry(referrers_api=True)
    a = attach(client, repo, SUBJECT, b'{"spdxVersion":"SPDX-2.3"}', "application/spdx+json")
    b = attach(client, repo, SUBJECT, b'{"_type":"x"}', "application/vnd.in-toto+json")
    assert TAG not in srv.tags and [ident for ident, _ in srv.puts] == [a, b]  # manifests by digest only
    assert json.loads(srv.manifests[a][0])["subject"] == SUBJECT
    assert {d["digest"] for d in list_referrers(client, repo, SUBJECT["digest"])} == {a, b}


def test_without_the_api_the_tag_is_written_conditionally(make_registry):
    srv, client, repo = make_registry(conditional=True)
    a = attach(client, repo, SUBJECT, b'{"spdxVersion":"SPDX-2.3"}', "application/spdx+json")
    first_put = next(h for ident, h in srv.puts if ident == TAG)
    assert first_put.get("If-None-Match") == "*" and "If-Match" not in first_put
    before = srv.tags[TAG]
    b = attach(client, repo, SUBJECT, b'{"_type":"x"}', "application/vnd.in-toto+json")
    last_put = [h for ident, h in srv.puts if ident == TAG][-1]
    assert last_put["If-Match"] == f'"{before}"'  # the ETag of the index it merged into
    assert _tag_entries(srv) == [a, b]
    assert attach(client, repo, SUBJECT, b'{"_type":"x"}', "application/vnd.in-toto+json") == b
    assert _tag_entries(srv) == [a, b]  # no duplicate entry
    assert [d["artifactType"] for d in list_referrers(client, repo, SUBJECT["digest"])] == [
        "application/spdx+json", "application/vnd.in-toto+json"]


def _other_writer(srv: FakeRegistry, times: int) -> list[str]:
    """Before each of our first ``times`` tag PUTs, another writer adds an entry of its own to
    the index; returns the digests it adds."""
    digests = [f"sha256:{i:064x}" for i in range(1, times + 1)]
    state = {"left": list(digests)}

    def hook():
        if state["left"]:
            other = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": state["left"].pop(0),
                     "size": 10, "artifactType": "application/example"}
            with srv.lock:
                current = srv.tags.get(TAG)
                entries = json.loads(srv.manifests[current][0])["manifests"] if current else []
                srv.store(json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries + [other]}).encode(),
                          OCI_INDEX, TAG)
    srv.on_tag_put = hook
    return digests


def test_if_match_412_merges_again(make_registry):
    srv, client, repo = make_registry(conditional=True)
    others = _other_writer(srv, 2)
    a = attach(client, repo, SUBJECT, b"doc", "application/spdx+json")
    assert _tag_entries(srv) == [*others, a]  # every writer's entry kept
    assert len([1 for ident, _ in srv.puts if ident == TAG]) == 3  # two 412s, then the write


def test_ignored_if_match_is_caught_by_the_read_back(make_registry):
    srv, client, repo = make_registry(conditional=False)  # as distribution 2.8: If-Match ignored
    a = attach(client, repo, SUBJECT, b"first", "application/spdx+json")
    stale = srv.manifests[srv.tags[TAG]][0]  # the index another writer started from

    def other_writer_lands_after_us():
        srv.after_tag_put = None
        srv.store(stale, OCI_INDEX, TAG)
    srv.after_tag_put = other_writer_lands_after_us
    b = attach(client, repo, SUBJECT, b"second", "application/vnd.in-toto+json")
    assert _tag_entries(srv) == [a, b]
    assert len([1 for ident, _ in srv.puts if ident == TAG]) == 3  # first attach, the lost write, merged again


def test_gives_up_with_one_line_when_the_tag_never_settles(make_registry):
    srv, client, repo = make_registry(conditional=True)
    _other_writer(srv, ATTEMPTS + 1)
    with pytest.raises(RegistryError, match="kept changing under other writers"):
        attach(client, repo, SUBJECT, b"doc", "application/spdx+json")


def test_a_tag_that_is_not_an_index_is_refused(make_registry):
    srv, client, repo = make_registry()
    srv.store(b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}',
              "application/vnd.oci.image.manifest.v1+json", TAG)
    with pytest.raises(RegistryError, match="is not an OCI index"):
        attach(client, repo, SUBJECT, b"doc", "application/spdx+json")
