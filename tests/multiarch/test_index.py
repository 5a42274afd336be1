"""``executor index`` against real loopback registries (Debian's docker-registry), checked with
skopeo: two single-platform pushes -> one index listing both platforms, which ``skopeo copy --all``
accepts. Until the CLI registers the command, it runs as ``python -m executor.index``."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest

from tests.support.registry import start_registry
from tests.support.tools import run, skopeo_inspect

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


def executor_index(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "executor.index", "--log-format", "text", *args],
                       capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"executor index {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def one_error_line(stderr: str) -> str:
    """The CLI's single ``error: ...`` line (log lines aside); no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def raw(ref: str) -> bytes:
    return run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"], text=False).stdout


def platforms(index: dict) -> set[tuple]:
    return {(m["platform"]["os"], m["platform"]["architecture"], m["platform"].get("variant"))
            for m in index["manifests"]}


def copy_all(ref: str, dest) -> None:
    run(["skopeo", "copy", "-q", "--all", "--src-tls-verify=false", f"docker://{ref}", f"oci:{dest}:x"])
    layout_index = json.loads((dest / "index.json").read_text())
    assert layout_index["manifests"][0]["mediaType"] in (OCI_INDEX, DOCKER_LIST)


def test_index_of_two_single_platform_pushes(registry, busybox, busybox_arm64, tmp_path):
    dest = f"{registry.host}/app-multi:1.0"
    digest_file = tmp_path / "digest"
    p = executor_index("--destination", dest, "--destination", f"{registry.host}/app-multi:latest",
                       "--digest-file", str(digest_file), busybox, busybox_arm64)
    body = raw(dest)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    assert digest_file.read_text() == digest
    assert p.stdout.strip().splitlines()[-1] == digest
    index = json.loads(body)
    assert index["mediaType"] == OCI_INDEX  # umoci's images are OCI manifests
    assert platforms(index) == {("linux", "amd64", None), ("linux", "arm64", "v8")}
    assert raw(f"{registry.host}/app-multi:latest") == body
    # the children exist by digest in the destination repository (mounted from busybox, busybox-arm64)
    for m in index["manifests"]:
        child = raw(f"{registry.host}/app-multi@{m['digest']}")
        assert "sha256:" + hashlib.sha256(child).hexdigest() == m["digest"] and len(child) == m["size"]
    copy_all(dest, tmp_path / "layout")
    # skopeo picks the arm64 image out of it
    cfg = json.loads(run(["skopeo", "inspect", "--raw", "--config", "--tls-verify=false", "--override-arch", "arm64",
                          f"docker://{dest}"]).stdout)
    assert cfg["architecture"] == "arm64"


def test_docker_schema2_sources_make_a_manifest_list(registry, busybox, busybox_arm64, tmp_path):
    srcs = []
    for src, arch in ((busybox, "amd64"), (busybox_arm64, "arm64")):
        ref = f"{registry.host}/busybox-v2s2:{arch}"
        run(["skopeo", "copy", "-q", "--format", "v2s2", "--src-tls-verify=false", "--dest-tls-verify=false",
             f"docker://{src}", f"docker://{ref}"])
        srcs.append(ref)
    dest = f"{registry.host}/busybox-v2s2:latest"  # same repository: nothing to copy
    executor_index("-d", dest, *srcs)
    index = json.loads(raw(dest))
    assert index["mediaType"] == DOCKER_LIST
    assert {m["mediaType"] for m in index["manifests"]} == {"application/vnd.docker.distribution.manifest.v2+json"}
    assert platforms(index) == {("linux", "amd64", None), ("linux", "arm64", "v8")}
    copy_all(dest, tmp_path / "layout")


def test_index_across_registries_copies_blobs(registry, busybox, busybox_arm64, tmp_path):
    other = start_registry(tmp_path / "other-registry")
    try:
        dest = f"{other.host}/team/app:2"
        digest_file = tmp_path / "d"
        executor_index("-d", dest, "--digest-file", str(digest_file), busybox_arm64, busybox)
        index = json.loads(raw(dest))
        assert [m["platform"]["architecture"] for m in index["manifests"]] == ["arm64", "amd64"]  # order kept
        copy_all(dest, tmp_path / "layout")
        assert digest_file.read_text().startswith("sha256:")
    finally:
        other.stop()


def test_index_source_is_refused(registry, busybox, busybox_multi):
    dest = f"{registry.host}/refused:1"
    p = executor_index("-d", dest, busybox_multi, busybox, check=False)
    assert p.returncode == 1
    err = one_error_line(p.stderr)
    assert "is an image index / manifest list" in err and busybox_multi in err
    assert run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{dest}"], check=False).returncode != 0


def test_same_platform_twice_is_refused(registry, busybox):
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{busybox}",
         f"docker://{registry.host}/busybox-copy:latest"])
    dest = f"{registry.host}/twice:1"
    p = executor_index("-d", dest, busybox, f"{registry.host}/busybox-copy:latest", check=False)
    assert p.returncode == 1
    assert "are both linux/amd64" in one_error_line(p.stderr)
    # nothing was written: no child was copied before the refusal
    assert run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{dest}"], check=False).returncode != 0


@pytest.mark.parametrize("args, message", [
    (["SRC"], "no --destination given"),
])
def test_usage_errors(args, message, registry, busybox):
    p = executor_index(*[busybox if a == "SRC" else a for a in args], check=False)
    assert p.returncode == 1 and message in p.stderr
