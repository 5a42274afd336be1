"""``--push-ignore-immutable-tag-errors`` through the CLI against the real loopback registry.

Debian's docker-registry has no immutable tags, so a small rule sits in front of it
(tests/support/fault_proxy.py, kind ``refuse_existing``): a manifest PUT at a tag the registry
already holds is refused with ECR's answer (400 ``TAG_INVALID``) or Harbor's (412
``PRECONDITION``), as those registries do; everything else reaches the real registry, which
stores the blobs, manifests and tags the test then reads back with skopeo.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.tools import run_executor, skopeo_inspect

pytestmark = pytest.mark.integration

REFUSALS = {
    "ecr": (400, "TAG_INVALID", "The image tag 'v1' already exists in the 'app' repository and cannot be "
                                "overwritten because the tag is immutable."),
    "harbor": (412, "PRECONDITION", "Failed to process request due to 'app:v1' configured as immutable."),
}


@pytest.fixture
def immutable(registry, request):
    """(proxy, repository, refusal kind): the session registry behind an immutable-tag rule for
    the manifest PUTs of one fresh repository (its tags, once they exist, cannot be moved)."""
    kind = getattr(request, "param", "ecr")
    status, code, message = REFUSALS[kind]
    host, port = registry.host.rsplit(":", 1)
    repo = f"imm-{uuid.uuid4().hex[:8]}/app"
    body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
    with FaultProxy((host, int(port))) as px:
        px.add(Fault("refuse_existing", "PUT", rf"^/v2/{repo}/manifests/[^/]+$", status=status, body=body,
                     times=1000))
        yield px, f"{px.host}/{repo}", kind


def _ctx(tmp_path: Path, content: str) -> Path:
    ctx = tmp_path / f"ctx-{content}"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text(content + "\n")
    return ctx


def _build(tmp_path: Path, content: str, dests: list[str], *extra: str, check: bool = True):
    out = tmp_path / f"out-{content}-{uuid.uuid4().hex[:4]}"
    out.mkdir()
    args = ["--context", str(_ctx(tmp_path, content)), "--log-format", "text",
            "--insecure-registry", dests[0].split("/")[0], "--digest-file", str(out / "digest"),
            "--image-name-tag-with-digest-file", str(out / "names")]
    for d in dests:
        args += ["--destination", d]
    return run_executor([*args, *extra], check=check), out


def _digest(ref: str) -> str:
    return skopeo_inspect(ref)["Digest"]


@pytest.mark.parametrize("immutable", sorted(REFUSALS), indirect=True)
def test_with_the_flag_a_kept_tag_is_one_warning_and_the_rest_is_pushed(immutable, registry, tmp_path):
    proxy, repo, kind = immutable
    _, first = _build(tmp_path, "one", [f"{repo}:v1"])
    old = (first / "digest").read_text()
    assert _digest(f"{repo}:v1") == old

    p, out = _build(tmp_path, "two", [f"{repo}:v1", f"{repo}:v2"], "--push-ignore-immutable-tag-errors")
    assert p.returncode == 0, p.stderr
    new = (out / "digest").read_text()
    assert new.startswith("sha256:") and new != old
    warns = [line for line in p.stderr.splitlines() if line.startswith("WARN")]
    status, code, message = REFUSALS[kind]
    assert warns == [f"WARN[push] --destination {repo}:v1: the registry refused to move this immutable tag "
                     f"({code}: {message}); the tag still names {old}, the built image {new} is not tagged there "
                     "(--push-ignore-immutable-tag-errors)"]
    # the registry kept v1, got v2, and the digest files name the built image (as Kaniko writes them)
    assert _digest(f"{repo}:v1") == old
    assert _digest(f"{repo}:v2") == new
    assert (out / "names").read_text() == f"{repo}:v1@{new}\n{repo}:v2@{new}\n"
    assert [a for _, _, a in proxy.log if a != "forward"] == [f"refuse_existing {status}"]


def test_without_the_flag_the_refusal_is_one_error_line(immutable, registry, tmp_path):
    proxy, repo, _ = immutable
    _, first = _build(tmp_path, "one", [f"{repo}:v1"])
    old = (first / "digest").read_text()

    p, out = _build(tmp_path, "two", [f"{repo}:v1", f"{repo}:v2"], check=False)
    assert p.returncode == 1
    assert "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and p.stderr.rstrip().splitlines()[-1] == errors[0]
    _, code, message = REFUSALS["ecr"]
    assert errors[0] == (f"error: --destination {repo}:v1: registry {proxy.host} refused to move tag 'v1' of repo "
                         f"'{repo.split('/', 1)[1]}' (400 bad request: {code}: {message}): the tag exists and the "
                         "repository keeps its tags immutable; push under a new tag (or pass "
                         "--push-ignore-immutable-tag-errors to warn and carry on)")
    assert _digest(f"{repo}:v1") == old
    assert not (out / "digest").exists() and not (out / "names").exists()  # nothing written after a failed push


def test_the_same_image_again_is_not_refused(immutable, registry, tmp_path):
    """A rebuild of the same content (``--reproducible``): the tag already names this digest, so
    nothing is PUT and an immutable registry has nothing to refuse (ECR and Harbor refuse even an
    identical manifest), with or without the flag."""
    proxy, repo, _ = immutable
    _, first = _build(tmp_path, "same", [f"{repo}:v1"], "--reproducible")
    p, again = _build(tmp_path, "same", [f"{repo}:v1"], "--reproducible")
    assert p.returncode == 0, p.stderr
    assert (again / "digest").read_text() == (first / "digest").read_text() == _digest(f"{repo}:v1")
    assert "WARN" not in p.stderr
    assert [a for _, _, a in proxy.log if a != "forward"] == []


def test_executor_push_takes_the_flag(immutable, registry, tmp_path):
    proxy, repo, _ = immutable
    _build(tmp_path, "one", [f"{repo}:v1"])
    layout = tmp_path / "layout"
    run_executor(["--context", str(_ctx(tmp_path, "three")), "--no-push", "--oci-layout-path", str(layout),
                  "--digest-file", str(tmp_path / "built")])
    built = (tmp_path / "built").read_text()
    push = ["push", "--oci-layout-path", str(layout), "-d", f"{repo}:v1", "-d", f"{repo}:v3", "--log-format", "text",
            "--digest-file", str(tmp_path / "pushed"), "--insecure-registry", proxy.host]
    refused = run_executor(push, check=False)
    assert refused.returncode == 1 and "--push-ignore-immutable-tag-errors" in refused.stderr.splitlines()[-1]
    p = run_executor([*push, "--push-ignore-immutable-tag-errors"])
    assert p.stdout.strip() == built == (tmp_path / "pushed").read_text()
    assert _digest(f"{repo}:v3") == built and _digest(f"{repo}:v1") != built
    assert len([line for line in p.stderr.splitlines() if line.startswith("WARN")]) == 1
