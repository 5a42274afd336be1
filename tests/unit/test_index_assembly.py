"""executor.index.assemble_index with an in-memory registry: what is copied where, in which
order (the index last), the index formats (OCI image-spec image-index.md; Docker manifest list)
and the one-line refusals. The real-registry tests are in tests/multiarch/test_index.py."""

from __future__ import annotations

import hashlib
import json

import pytest

from executor.errors import NotFound, UserError
from executor.index import assemble_index
from executor.reference import Reference

OCI_M = "application/vnd.oci.image.manifest.v1+json"
DOCKER_M = "application/vnd.docker.distribution.manifest.v2+json"


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


class FakeRegistry:
    """Blobs per (registry, repo), manifests per (registry, repo, tag-or-digest); logs every write."""

    def __init__(self):
        self.blobs: dict[tuple, bytes] = {}
        self.manifests: dict[tuple, tuple[bytes, str]] = {}
        self.writes: list[tuple] = []

    def add_image(self, ref: str, arch: str, media_type: str = OCI_M, variant: str | None = None,
                  index: bool = False) -> str:
        registry, _, rest = ref.partition("/")
        repo, _, tag = rest.partition(":")
        if index:
            body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                               "manifests": []}).encode()
            self.manifests[(registry, repo, tag)] = (body, "application/vnd.oci.image.index.v1+json")
            return ref
        cfg = json.dumps({"os": "linux", "architecture": arch, **({"variant": variant} if variant else {})}).encode()
        layer = f"layer-{arch}".encode()
        for b in (cfg, layer):
            self.blobs[(registry, repo, sha(b))] = b
        body = json.dumps({"schemaVersion": 2, "mediaType": media_type,
                           "config": {"mediaType": "c", "digest": sha(cfg), "size": len(cfg)},
                           "layers": [{"mediaType": "l", "digest": sha(layer), "size": len(layer)}]}).encode()
        self.manifests[(registry, repo, tag)] = self.manifests[(registry, repo, sha(body))] = (body, media_type)
        return ref

    # -- the RegistryClient methods assemble_index uses
    def get_manifest(self, ref: Reference):
        try:
            body, mt = self.manifests[(ref.registry, ref.repository, ref.identifier)]
        except KeyError:
            raise NotFound(f"{ref}: 404") from None
        return body, mt, sha(body)

    def head_manifest(self, ref: Reference):
        hit = self.manifests.get((ref.registry, ref.repository, ref.identifier))
        return (sha(hit[0]), hit[1]) if hit else None

    def fetch_blob(self, ref: Reference, digest: str, dest) -> int:
        data = self.blobs[(ref.registry, ref.repository, digest)]
        dest.write(data)
        return len(data)

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        return (ref.registry, ref.repository, digest) in self.blobs

    def mount_blob(self, ref: Reference, digest: str, from_repository: str) -> bool:
        data = self.blobs.get((ref.registry, from_repository, digest))
        if data is None:
            return False
        self.blobs[(ref.registry, ref.repository, digest)] = data
        self.writes.append(("mount", ref.registry, ref.repository, digest))
        return True

    def upload_blob(self, ref: Reference, path, digest: str, size: int) -> None:
        data = open(path, "rb").read()
        assert sha(data) == digest and len(data) == size
        self.blobs[(ref.registry, ref.repository, digest)] = data
        self.writes.append(("upload", ref.registry, ref.repository, digest))

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> str:
        ident = ref.tag or ref.digest
        assert ref.digest is None or ref.digest == sha(data)
        self.manifests[(ref.registry, ref.repository, ident)] = (data, media_type)
        self.manifests[(ref.registry, ref.repository, sha(data))] = (data, media_type)
        self.writes.append(("manifest", ref.registry, ref.repository, ident))
        return sha(data)


@pytest.fixture
def reg():
    r = FakeRegistry()
    r.add_image("r.io/app:amd64", "amd64")
    r.add_image("r.io/app-arm:latest", "arm64", variant="v8")
    return r


def test_same_registry_mounts_then_puts_index_last(reg):
    digest = assemble_index(reg, ["r.io/app:amd64", "r.io/app-arm:latest"], ["r.io/app:1", "r.io/app:latest"])
    body, mt = reg.manifests[("r.io", "app", "1")]
    assert sha(body) == digest and mt == "application/vnd.oci.image.index.v1+json"
    doc = json.loads(body)
    assert doc["schemaVersion"] == 2 and doc["mediaType"] == mt
    assert [m["platform"] for m in doc["manifests"]] == [{"architecture": "amd64", "os": "linux"},
                                                         {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    for m in doc["manifests"]:  # every child exists in the destination repository
        assert ("r.io", "app", m["digest"]) in reg.manifests and m["size"] == len(reg.manifests[("r.io", "app", m["digest"])][0])
    kinds = [w[0] for w in reg.writes]
    assert kinds == ["mount", "mount", "manifest", "manifest", "manifest"]  # arm64 blobs, arm64 manifest, 2 tags
    assert reg.writes[-2][3] == "1" and reg.writes[-1][3] == "latest"


def test_other_registry_copies_blobs(reg):
    assemble_index(reg, ["r.io/app:amd64", "r.io/app-arm:latest"], ["other.io/team/app:2"])
    kinds = [w[0] for w in reg.writes]
    assert kinds.count("upload") == 4 and "mount" not in kinds
    assert reg.writes[-1] == ("manifest", "other.io", "team/app", "2")
    assert kinds == ["upload", "upload", "manifest", "upload", "upload", "manifest", "manifest"]  # children by digest


def test_all_docker_schema2_is_a_manifest_list():
    r = FakeRegistry()
    r.add_image("r.io/d:a", "amd64", DOCKER_M)
    r.add_image("r.io/d:b", "arm64", DOCKER_M)
    assemble_index(r, ["r.io/d:a", "r.io/d:b"], ["r.io/d:multi"])
    doc = json.loads(r.manifests[("r.io", "d", "multi")][0])
    assert doc["mediaType"] == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert {m["mediaType"] for m in doc["manifests"]} == {DOCKER_M}
    assert [w[0] for w in r.writes] == ["manifest"]  # same repository: nothing copied


def test_mixed_formats_make_an_oci_index(reg):
    reg.add_image("r.io/app:docker-s390x", "s390x", DOCKER_M)
    assemble_index(reg, ["r.io/app:amd64", "r.io/app:docker-s390x"], ["r.io/app:m"])
    assert json.loads(reg.manifests[("r.io", "app", "m")][0])["mediaType"] == "application/vnd.oci.image.index.v1+json"


def test_index_source_refused_before_any_write(reg):
    reg.add_image("r.io/app:multi", "", index=True)
    with pytest.raises(UserError, match=r"r.io/app:multi is an image index / manifest list"):
        assemble_index(reg, ["r.io/app-arm:latest", "r.io/app:multi"], ["r.io/app:x"])
    assert reg.writes == []


def test_duplicate_platform_refused_before_any_write(reg):
    reg.add_image("r.io/app-arm:v8", "arm64", variant="v8")
    reg.add_image("r.io/app-arm:plain", "arm64")  # arm64 without variant is arm64/v8
    with pytest.raises(UserError, match=r"are both linux/arm64"):
        assemble_index(reg, ["r.io/app:amd64", "r.io/app-arm:v8", "r.io/app-arm:plain"], ["r.io/app:x"])
    assert reg.writes == []
    msg = str(pytest.raises(UserError, assemble_index, reg, ["r.io/app:amd64", "r.io/app:amd64"], ["r.io/app:x"]).value)
    assert "\n" not in msg


def test_missing_arguments(reg):
    with pytest.raises(UserError, match="no source image"):
        assemble_index(reg, [], ["r.io/app:x"])
    with pytest.raises(UserError, match="no --destination"):
        assemble_index(reg, ["r.io/app:amd64"], [])
