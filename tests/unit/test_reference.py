"""Image reference parsing (distribution reference grammar + Docker Hub normalisation)."""

from __future__ import annotations

import pytest

from executor.errors import UserError
from executor.reference import Reference, ReferenceError, parse_reference, registry_api_host

D = "sha256:" + "a" * 64

VALID = [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("library/busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("registry-1.docker.io/library/busybox:x", "docker.io", "library/busybox", "x", None),
    ("user/app", "docker.io", "user/app", "latest", None),
    ("ghcr.io/org/app:v1.2.3", "ghcr.io", "org/app", "v1.2.3", None),
    ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "latest", None),
    ("127.0.0.1:5000/a/b:t", "127.0.0.1:5000", "a/b", "t", None),
    (f"127.0.0.1:5000/a/b@{D}", "127.0.0.1:5000", "a/b", None, D),
    (f"127.0.0.1:5000/a/b:t@{D}", "127.0.0.1:5000", "a/b", "t", D),
    (f"busybox@{D}", "docker.io", "library/busybox", None, D),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
    ("Example.COM/app", "example.com", "app", "latest", None),
    ("quay.io/a/b/c/d", "quay.io", "a/b/c/d", "latest", None),
    ("reg.example.com/my_app/x-y.z__w:T_1", "reg.example.com", "my_app/x-y.z__w", "T_1", None),
    ("a--b/c", "docker.io", "a--b/c", "latest", None),
    ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
    ("gcr.io/p/img:" + "x" * 128, "gcr.io", "p/img", "x" * 128, None),
]


@pytest.mark.parametrize("text,registry,repo,tag,digest", VALID)
def test_valid(text, registry, repo, tag, digest):
    r = parse_reference(text)
    assert (r.registry, r.repository, r.tag, r.digest) == (registry, repo, tag, digest)


INVALID = [
    ("", "non-empty"),
    (" busybox", "spaces"),
    ("Busybox", "lower-case"),
    ("docker.io/Library/busybox", "lower-case"),
    ("busybox:", "tag"),
    ("busybox:.bad", "tag"),
    ("busybox:" + "x" * 129, "tag"),
    ("busybox@sha256:abc", "64"),
    ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
    (f"busybox@sha256:{'A' * 64}", "lower-case hex"),
    ("a//b", "empty path component"),
    ("a/b/", "empty path component"),
    ("reg.io/", "missing repository"),
    ("a_/b", "repository component"),
    ("-a/b", "repository component"),
    ("x/a..b", "repository component"),
    ("bad_host.com:x/app", "registry"),
    ("-bad.com/app", "registry"),
    ("a/b@sha256:" + "a" * 64 + "@x", "more than one"),
    ("reg.io/" + "a" * 250, "255"),
    ("http://127.0.0.1:5000/x:1", "drop the 'http://' (an image reference has no scheme: 127.0.0.1:5000/x:1)"),
    ("docker://reg.io/a/b", "drop the 'docker://'"),
]


@pytest.mark.parametrize("text,needle", INVALID)
def test_invalid(text, needle):
    with pytest.raises(ReferenceError) as ei:
        parse_reference(text)
    assert needle in str(ei.value)
    assert isinstance(ei.value, UserError)


@pytest.mark.parametrize("text,canonical", [
    ("busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/user/app:v", "docker.io/user/app:v"),
    (f"127.0.0.1:5000/a@{D}", f"127.0.0.1:5000/a@{D}"),
    (f"ghcr.io/a/b:t@{D}", f"ghcr.io/a/b:t@{D}"),
])
def test_str_roundtrip(text, canonical):
    r = parse_reference(text)
    assert str(r) == canonical
    assert parse_reference(str(r)) == r


def test_name_with_tag_with_digest():
    r = parse_reference("127.0.0.1:5000/a/b:t")
    assert r.name == "127.0.0.1:5000/a/b"
    assert parse_reference("busybox").name == "docker.io/library/busybox"
    assert r.with_tag("u").tag == "u" and r.tag == "t"     # frozen copy
    rd = r.with_digest(D)
    assert (rd.tag, rd.digest) == ("t", D)
    assert rd.identifier == D and r.identifier == "t"
    with pytest.raises(ReferenceError):
        r.with_tag("-no")
    with pytest.raises(ReferenceError):
        r.with_digest("sha256:xyz")
    with pytest.raises(Exception):
        r.tag = "x"  # type: ignore[misc]


def test_registry_api_host():
    assert registry_api_host("docker.io") == "registry-1.docker.io"
    assert registry_api_host("index.docker.io") == "registry-1.docker.io"
    assert registry_api_host("ghcr.io") == "ghcr.io"
    assert registry_api_host("127.0.0.1:5000") == "127.0.0.1:5000"


def test_reference_is_hashable_and_comparable():
    assert {parse_reference("busybox"), parse_reference("docker.io/library/busybox:latest")} == {
        Reference("docker.io", "library/busybox", "latest", None)}
