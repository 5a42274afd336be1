"""Immutable tags: a registry's refusal to move an existing tag is told apart from other refusals
of a manifest PUT, and ``push_manifest`` skips it with a warning only when asked
(``--push-ignore-immutable-tag-errors``).

The registry here is scripted (httpx.MockTransport answering as AWS ECR and Harbor do, their
status codes and error bodies as documented in executor/registry/immutable.py): the loopback
docker-registry has no immutable tags, so it cannot give these answers. The CLI path against the
real registry is tests/integration/test_immutable_tags.py.
"""

from __future__ import annotations

import json
import logging

import httpx
import pytest

from executor.errors import ImmutableTagError, RegistryError
from executor.oci.image import sha256_digest
from executor.outputs import push_manifest
from executor.reference import parse_reference
from executor.registry.client import RegistryClient, RegistryOptions
from executor.registry.immutable import immutable_tag_refusal
from executor.registry.uploads import BlobToPush

ECR_NOW = ("The image tag 'v1' already exists in the 'team/app' repository and cannot be overwritten because "
           "the tag is immutable.")
ECR_BEFORE_2025 = ("The image tag 'v1' already exists in the 'team/app' repository and cannot be overwritten "
                   "because the repository is immutable.")
HARBOR = "Failed to process request due to 'app:v1' configured as immutable."


def _errors(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


# -- recognising the refusal ---------------------------------------------------------------------

@pytest.mark.parametrize("status,body,words", [
    (400, _errors("TAG_INVALID", ECR_NOW), "TAG_INVALID: The image tag 'v1' already exists"),
    (400, _errors("TAG_INVALID", ECR_BEFORE_2025), "because the repository is immutable"),
    (412, _errors("PRECONDITION", HARBOR), "PRECONDITION: Failed to process request due to 'app:v1' configured"),
    (400, _errors("FAILED_PRECONDITION", "The repository has enabled tag immutability."), "tag immutability"),
    (403, _errors("DENIED", "requested access to the resource is denied - This tag is already assigned to an image "
                  "in this repository and cannot be updated due to immutability settings."), "immutability settings"),
    (400, _errors("UNKNOWN", "tag is immutable and cannot be overwritten"), "UNKNOWN: tag is immutable"),
    (400, _errors("", "The requested tag already exists and cannot be overwritten."), "already exists and cannot"),
    (409, b"tag=v1 cannot be overwritten because r.io/team/app is an immutable repository", "immutable repository"),
])
def test_registries_refusals_are_recognised(status, body, words):
    got = immutable_tag_refusal(status, body)
    assert got is not None and words in got and len(got) <= 300


@pytest.mark.parametrize("status,body", [
    (400, _errors("TAG_INVALID", "manifest tag did not match URI")),        # the spec's malformed-tag answer
    (400, _errors("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")),
    (400, _errors("MANIFEST_INVALID", "manifest invalid")),
    (401, _errors("UNAUTHORIZED", "authentication required for immutable repository")),  # auth, whatever it says
    (404, _errors("NAME_UNKNOWN", "repository name not known to registry")),
    (429, _errors("TOOMANYREQUESTS", "immutable rate limit")),
    (500, _errors("UNKNOWN", "tag is immutable")),                            # not a refusal: a server failure
    (403, _errors("DENIED", "requested access to the resource is denied")),
    (412, b""),
])
def test_other_refusals_are_not_immutability(status, body):
    assert immutable_tag_refusal(status, body) is None


# -- the client and push_manifest against a scripted registry ------------------------------------

CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": sha256_digest(CONFIG), "size": len(CONFIG)},
                       "layers": []}).encode()
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"
OLD = "sha256:" + "0d" * 32


class ScriptedRegistry:
    """Answers as a registry whose tag ``v1`` of every repository exists (digest OLD) and is
    immutable: a PUT at ``v1`` gets ``refusal`` (status, body); other tags are stored."""

    def __init__(self, refusal: tuple[int, bytes]):
        self.refusal = refusal
        self.puts: list[str] = []

    def __call__(self, req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if path == "/v2/":
            return httpx.Response(200)
        if "/blobs/" in path and req.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(CONFIG))})
        if "/manifests/" in path:
            ident = path.rsplit("/", 1)[1]
            if req.method == "HEAD":
                if ident == "v1":
                    return httpx.Response(200, headers={"Docker-Content-Digest": OLD, "Content-Type": MANIFEST_TYPE})
                return httpx.Response(404)
            if req.method == "PUT":
                self.puts.append(path)
                if ident == "v1":
                    status, body = self.refusal
                    return httpx.Response(status, content=body, headers={"Content-Type": "application/json"})
                return httpx.Response(201, headers={"Docker-Content-Digest": sha256_digest(req.content)})
        return httpx.Response(500)


def _client(monkeypatch, registry: ScriptedRegistry) -> RegistryClient:
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.0)
    c = RegistryClient(RegistryOptions())
    mock = httpx.Client(transport=httpx.MockTransport(registry))
    monkeypatch.setattr(c._transport, "client", lambda ep: mock)
    return c


def _push(client, destinations, ignore):
    config = BlobToPush(sha256_digest(CONFIG), len(CONFIG), lambda: CONFIG)
    return push_manifest(client, MANIFEST, MANIFEST_TYPE, [], config, destinations, ignore_immutable=ignore)


REFUSALS = {"ecr": (400, _errors("TAG_INVALID", ECR_NOW)), "harbor": (412, _errors("PRECONDITION", HARBOR))}


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_put_manifest_raises_immutable_tag_error(monkeypatch, kind):
    reg = ScriptedRegistry(REFUSALS[kind])
    c = _client(monkeypatch, reg)
    with pytest.raises(ImmutableTagError) as ei:
        c.put_manifest(parse_reference("r.io/team/app:v1"), MANIFEST, MANIFEST_TYPE)
    e = ei.value
    assert e.status == REFUSALS[kind][0] and e.reference == "r.io/team/app:v1"
    assert ("TAG_INVALID" if kind == "ecr" else "PRECONDITION") in e.detail
    assert str(e).startswith("registry r.io refused to move tag 'v1' of repo 'team/app' (")
    assert str(e).endswith("the tag exists and the repository keeps its tags immutable; push under a new tag")


def test_a_by_digest_put_refused_alike_is_a_plain_registry_error(monkeypatch):
    """Immutability is about tags: the same words on a PUT by digest are not skipped."""
    reg = ScriptedRegistry(REFUSALS["ecr"])
    reg_call = reg.__call__

    def refuse_all_puts(req):
        if req.method == "PUT":
            return httpx.Response(400, content=_errors("TAG_INVALID", ECR_NOW))
        return reg_call(req)
    c = _client(monkeypatch, refuse_all_puts)
    with pytest.raises(RegistryError) as ei:
        c.put_manifest(parse_reference(f"r.io/team/app@{sha256_digest(MANIFEST)}"), MANIFEST, MANIFEST_TYPE)
    assert not isinstance(ei.value, ImmutableTagError) and ei.value.status == 400


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_with_the_flag_the_refusal_is_one_warning_and_the_other_tags_are_pushed(monkeypatch, caplog, kind):
    reg = ScriptedRegistry(REFUSALS[kind])
    c = _client(monkeypatch, reg)
    with caplog.at_level(logging.INFO):
        pushed = _push(c, ["r.io/team/app:v1", "r.io/team/app:v2", "r.io/other/app:v3"], ignore=True)
    assert pushed.digest == sha256_digest(MANIFEST)
    assert [str(r) for r in pushed.kept] == ["r.io/team/app:v1"]
    assert reg.puts == ["/v2/team/app/manifests/v1", "/v2/team/app/manifests/v2", "/v2/other/app/manifests/v3"]
    warns = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warns) == 1, warns
    assert warns[0].startswith("--destination r.io/team/app:v1: the registry refused to move this immutable tag (")
    assert REFUSALS[kind][1].decode().split('"message": "')[1][:30] in warns[0]
    assert f"the tag still names {OLD}, the built image {pushed.digest} is not tagged there" in warns[0]
    assert warns[0].endswith("(--push-ignore-immutable-tag-errors)")
    # the repository still holds the image through v2: attestations go there, and to other/app
    assert pushed.landed() == ["r.io/team/app:v1", "r.io/team/app:v2", "r.io/other/app:v3"]


def test_a_repository_whose_only_tag_was_kept_gets_no_attestations(monkeypatch):
    c = _client(monkeypatch, ScriptedRegistry(REFUSALS["harbor"]))
    pushed = _push(c, ["r.io/team/app:v1", "r.io/other/app:v3"], ignore=True)
    assert pushed.landed() == ["r.io/other/app:v3"]


@pytest.mark.parametrize("kind", sorted(REFUSALS))
def test_without_the_flag_the_refusal_is_an_error_naming_the_flag(monkeypatch, kind):
    reg = ScriptedRegistry(REFUSALS[kind])
    c = _client(monkeypatch, reg)
    with pytest.raises(ImmutableTagError) as ei:
        _push(c, ["r.io/team/app:v1", "r.io/team/app:v2"], ignore=False)
    msg = str(ei.value)
    assert "\n" not in msg
    assert msg.startswith("--destination r.io/team/app:v1: registry r.io refused to move tag 'v1'")
    assert msg.endswith("(or pass --push-ignore-immutable-tag-errors to warn and carry on)")
    assert reg.puts == ["/v2/team/app/manifests/v1"]  # stopped at the refusal, as Kaniko's push does


def test_other_refusals_still_fail_with_the_flag(monkeypatch):
    reg = ScriptedRegistry((400, _errors("MANIFEST_BLOB_UNKNOWN", "blob unknown to registry")))
    c = _client(monkeypatch, reg)
    with pytest.raises(RegistryError) as ei:
        _push(c, ["r.io/team/app:v1"], ignore=True)
    assert not isinstance(ei.value, ImmutableTagError) and "MANIFEST_BLOB_UNKNOWN" in str(ei.value)
