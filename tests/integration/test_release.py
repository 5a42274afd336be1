"""The release path (scripts/release.py) against a loopback registry, read back with other tools.

One release per module, single platform (linux/amd64). Its two builds run at once: alone, the
executor image takes ~30 s (pip install from PyPI) and the helper image ~31 s (apt-get install of
git, ssh, skopeo) on the 2-core test machine; the module took 150 s there (release 126 s, unpacking
the helper image 23 s) with other test runs sharing the cores, 205-355 s at load 5-10. Both
platforms do not fit the CI budget: the opt-in ``test_two_platform_release``
(EXECUTOR_TEST_RELEASE_MULTIARCH=1) makes an arm64 Python base (debootstrap under qemu: 692 s the
first time, then cached) and releases for linux/amd64 and linux/arm64 (517-733 s: the executor
image's arm64 pip install and the helper image's arm64 apt-get run under emulation); in CI the
emulated multi-platform build is covered by tests/multiarch. Then:

* the bundle is read back with skopeo (manifest) and plain HTTP GETs of its blobs: one gzip tar
  layer per Task/StepAction/Pipeline of tekton/, each with the three ``dev.tekton.image.*``
  annotations, holding exactly one file, byte-identical to the release catalog's file, whose
  image defaults are the pushed images by digest;
* the released catalog is grepped (as text, independently of scripts/release_catalog.py) for
  any tag-only image reference;
* the released helper image runs the released git-clone step and the Pipeline's digest-check
  step as Tekton would run them (substitution, scripts in /tekton/scripts, no capabilities, the
  image's USER 65534:65534 since the steps name no uid; git-clone also as OpenShift's
  restricted-v2 runs it: uid 1000680000, gid 0, no passwd entry), taking the image from the
  pinned defaults.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.pod import BindMount, caps_for, pod_config, run_pod, runc_spec
from tests.support.tekton_step import render_step, write_scripts
from tests.support.tools import REPO, SCRIPTS, have, run, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

VERSION = "0.9.0-test.1"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
BUNDLE_DIRS = {"tasks": "task", "stepactions": "stepaction", "pipelines": "pipeline"}


@pytest.fixture(scope="module")
def python_base(registry) -> str:
    """The same "python slim" stand-in base as the executor-image test (debootstrap, cached)."""
    missing = have("debootstrap", "tar")
    if missing:
        pytest.skip(f"cannot make the python base image: {missing} missing (run scripts/install-deps.sh)")
    out = run([str(SCRIPTS / "make-python-image.sh"), registry.host, "python:3.11-slim"], timeout=900)
    return out.stdout.strip().splitlines()[-1]


def _run_release(registry, base: str, platforms: str, work: Path, repository: str) -> dict:
    """Run scripts/release.py; return its JSON summary plus ``out`` (stdout) and paths."""
    flags = []
    pems = sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []
    if pems:  # TEST ONLY: lets the executor image's pip through this machine's TLS proxy
        (work / "pip_ca.pem").write_text("".join(p.read_text() for p in pems))
        flags.append(f"--build-flag=--secret=id=pip_ca,src={work / 'pip_ca.pem'}")
    flags += [f"--build-flag=--build-arg={v}" for v in PROXY_VARS if os.environ.get(v)]
    catalog = work / "out" / "tekton"
    p = subprocess.run([sys.executable, str(SCRIPTS / "release.py"), "--repository", f"{registry.host}/{repository}",
                        "--version", VERSION, "--platforms", platforms, "--base-image", base,
                        "--catalog-out", str(catalog), "--insecure-registry", registry.host,
                        "--source-url", "https://example.invalid/executor", "--revision", "0" * 40, *flags],
                       capture_output=True, text=True, timeout=3600)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr
    summary = json.loads((work / "out" / "release.json").read_text())
    summary.update(out=p.stdout, catalog_path=catalog, work=work)
    return summary


@pytest.fixture(scope="module")
def release(registry, python_base, tmp_path_factory) -> dict:
    """Run scripts/release.py once for linux/amd64."""
    return _run_release(registry, python_base, "linux/amd64", tmp_path_factory.mktemp("release"), "rel")


def _pushed(release: dict, what: str) -> dict:
    [entry] = [e for e in release["pushed"] if e["what"] == what]
    return entry


def _by_digest(entry: dict) -> str:
    """REPO@DIGEST (skopeo refuses a reference with both a tag and a digest)."""
    return f"{entry['reference'].rsplit(':', 1)[0]}@{entry['digest']}"


def _blob(registry, repository: str, digest: str) -> bytes:
    with urllib.request.urlopen(f"http://{registry.host}/v2/{repository}/blobs/{digest}", timeout=30) as r:
        data = r.read()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def _catalog_resources() -> dict[tuple[str, str], Path]:
    """(kind, name) -> file for every Task, StepAction and Pipeline of the working tree's tekton/."""
    out = {}
    for dirname, kind in BUNDLE_DIRS.items():
        for f in sorted((REPO / "tekton" / dirname).glob("*/*/*.yaml")):
            if f.stem == f.parent.parent.name:
                out[(kind, f.stem)] = f.relative_to(REPO / "tekton")
    return out


# ------------------------------------------------------------------------- images and output
def test_release_prints_every_digest_and_the_registry_agrees(release, registry):
    assert [e["what"] for e in release["pushed"]] == ["executor", "catalog-tools", "bundle"]
    for e in release["pushed"]:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", e["digest"]), e
        assert f"{e['what']} {e['reference']}@{e['digest']}" in release["out"]
        raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{e['reference']}"],
                             capture_output=True, check=True).stdout
        assert "sha256:" + hashlib.sha256(raw).hexdigest() == e["digest"], e
    executor = skopeo_inspect(_pushed(release, "executor")["reference"], config=True)
    assert executor["config"]["Entrypoint"] == ["executor"]
    assert executor["config"]["Labels"]["org.opencontainers.image.version"] == VERSION
    tools = skopeo_inspect(_pushed(release, "catalog-tools")["reference"], config=True)
    assert tools["config"]["User"] == "65534:65534"
    assert tools["config"]["Labels"]["org.opencontainers.image.revision"] == "0" * 40


# ---------------------------------------------------------------------------------- the bundle
def test_bundle_read_back_holds_each_resource_pinned(release, registry):
    bundle = _pushed(release, "bundle")
    ref = bundle["reference"]
    repository = ref.split("/", 1)[1].rsplit(":", 1)[0]
    manifest = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"]).stdout)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["annotations"]["org.opencontainers.image.version"] == VERSION
    layers = manifest["layers"]
    assert 0 < len(layers) <= 20
    executor = f"{_pushed(release, 'executor')['reference']}@{_pushed(release, 'executor')['digest']}"
    tools = f"{_pushed(release, 'catalog-tools')['reference']}@{_pushed(release, 'catalog-tools')['digest']}"
    expected = _catalog_resources()
    seen = {}
    diff_ids = []
    for layer in layers:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        ann = layer["annotations"]
        kind, name, api_version = ann["dev.tekton.image.kind"], ann["dev.tekton.image.name"], ann["dev.tekton.image.apiVersion"]
        assert kind == kind.lower() and (kind, name) not in seen
        tar_bytes = gzip.decompress(_blob(registry, repository, layer["digest"]))
        diff_ids.append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            members = tar.getmembers()
            assert [(m.name, m.isfile()) for m in members] == [(f"{name}.yaml", True)]
            content = tar.extractfile(members[0]).read()
        # exactly the released catalog's file, which is the working tree's with only the image
        # defaults changed
        released = release["catalog_path"] / expected[(kind, name)]
        assert content == released.read_bytes()
        doc = yaml.safe_load(content)
        assert (doc["apiVersion"], doc["kind"].lower(), doc["metadata"]["name"]) == (api_version, kind, name)
        defaults = {p["name"]: p.get("default") for p in doc["spec"].get("params") or []}
        for param, want in (("BUILDER_IMAGE", executor), ("builder-image", executor),
                            ("GIT_IMAGE", tools), ("skopeo-image", tools)):
            if param in defaults:
                assert defaults[param] == want, (kind, name, param)
        source = (REPO / "tekton" / expected[(kind, name)]).read_text().splitlines()
        changed = [(a, b) for a, b in zip(source, content.decode().splitlines()) if a != b]
        assert all(a.strip().startswith("default:") and "@sha256:" in b for a, b in changed), changed
        seen[(kind, name)] = layer["digest"]
    assert set(seen) == set(expected), "the bundle holds every Task, StepAction and Pipeline, nothing else"
    config = json.loads(_blob(registry, repository, manifest["config"]["digest"]))
    assert config["rootfs"]["diff_ids"] == diff_ids


# ------------------------------------------------------------------- nothing left tag-only
_ITEM = re.compile(r'^(\s*)- name:\s*"?([A-Za-z0-9_.-]+)"?\s*$')
_IMAGE_LINE = re.compile(r"^\s*(?:-\s+)?image:\s*[\"']?([^\s\"'#]+)")
_DEFAULT_LINE = re.compile(r"^\s*default:\s*[\"']?([^\s\"'#]+)")
_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def tag_only_references(root: Path) -> list[str]:
    """grep-like: every ``image:`` value that is not ``$(...)`` and has no digest, and every
    ``default:`` of a ``- name: *IMAGE`` / ``*-image`` item without a digest."""
    found = []
    for f in sorted(root.rglob("*.y*ml")):
        param = None
        for n, line in enumerate(f.read_text().splitlines(), 1):
            m = _ITEM.match(line)
            if m:
                param = m.group(2)
                continue
            im = _IMAGE_LINE.match(line)
            if im and not im.group(1).startswith("$(") and not _DIGEST.search(im.group(1)):
                found.append(f"{f.relative_to(root)}:{n}: {line.strip()}")
            dm = _DEFAULT_LINE.match(line)
            if dm and param and re.search(r"(?i)[_-]image$", param) and not _DIGEST.search(dm.group(1)):
                found.append(f"{f.relative_to(root)}:{n}: {param} {line.strip()}")
    return found


def test_released_catalog_has_no_tag_only_image_reference(release, tmp_path):
    catalog = release["catalog_path"]
    assert tag_only_references(catalog) == []
    text = "\n".join(f.read_text() for f in catalog.rglob("*.y*ml"))
    for placeholder in ("ghcr.io/executor-project/executor:0.1.0", "alpine/git", "quay.io/skopeo"):
        assert placeholder not in text
    # The TriggerTemplate (not in the bundle) is pinned too.
    tt = yaml.safe_load((catalog / "triggers/build-and-push/0.1/build-and-push-run.yaml").read_text())
    [builder] = [p for p in tt["spec"]["params"] if p["name"] == "builder-image"]
    assert builder["default"].endswith(_pushed(release, "executor")["digest"])
    # the working tree still has tag-only defaults, and the grep sees them (it can fail)
    assert tag_only_references(REPO / "tekton")
    planted = tmp_path / "t.yaml"
    planted.write_text("spec:\n  steps:\n    - name: x\n      image: busybox:1.36@sha256:abc\n")
    assert tag_only_references(tmp_path) == ["t.yaml:4: image: busybox:1.36@sha256:abc"]


# ------------------------------------------------- the helper image runs the released steps
@pytest.fixture(scope="module")
def tools_rootfs(release, tmp_path_factory) -> Path:
    e = _pushed(release, "catalog-tools")
    return umoci_unpack(_by_digest(e), tmp_path_factory.mktemp("tools")) / "rootfs"


def _step_user(sc: dict, image_config: dict, user: tuple[int, int] | None) -> dict:
    """The process user a runtime gives the step: ``user`` (what OpenShift's restricted-v2 assigns:
    a uid from the namespace's range, gid 0), else the securityContext's runAsUser/runAsGroup, else
    the image's numeric USER, which kubelet needs non-root under runAsNonRoot."""
    if user is not None:
        return {"uid": user[0], "gid": user[1]}
    uid, _, gid = (image_config.get("User") or "0").partition(":")
    uid = sc.get("runAsUser", int(uid))
    gid = sc.get("runAsGroup", int(gid) if gid else uid)
    assert not (sc.get("runAsNonRoot") and uid == 0), "kubelet refuses runAsNonRoot with a root image user"
    return {"uid": uid, "gid": gid}


def _run_step(rootfs: Path, tmp: Path, step, mounts, image_config: dict, user: tuple[int, int] | None = None):
    scripts, home = tmp / "scripts", tmp / "home"
    write_scripts(step, scripts)
    home.mkdir(mode=0o777)
    home.chmod(0o777)
    cfg = pod_config(runc_spec(), image_config, command=step.command, args=step.args, env=step.env,
                     working_dir=step.working_dir, caps=caps_for(step.security_context),
                     mounts=[BindMount(str(scripts), "/tekton/scripts", readonly=True),
                             BindMount(str(home), "/tekton/home"), *mounts])
    sc = step.security_context
    cfg["process"]["user"] = _step_user(sc, image_config, user)
    cfg["process"]["noNewPrivileges"] = sc.get("allowPrivilegeEscalation") is False
    return run_pod(rootfs, tmp / "pod", cfg, name=f"rel-{uuid.uuid4().hex[:10]}", timeout=120)


@pytest.mark.parametrize("user", [None, (1000680000, 0)], ids=["image-user", "openshift-uid-gid0"])
def test_released_git_clone_step_runs_in_the_helper_image(release, tools_rootfs, tmp_path, user):
    """As the image's USER (65534:65534; the step names no uid) and as OpenShift's restricted-v2
    runs it: an arbitrary uid with gid 0 and no passwd entry."""
    task = yaml.safe_load((release["catalog_path"] / "tasks/git-clone/0.1/git-clone.yaml").read_text())
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    run(["git", "init", "-q", "-b", "main", str(repo)])
    (repo / "Dockerfile").write_text("FROM scratch\n")
    run(git[:3] + ["add", "Dockerfile"])
    run(git + ["commit", "-q", "-m", "one"])
    commit = run(git[:3] + ["rev-parse", "HEAD"]).stdout.strip()
    uid, gid = user or (65534, 65534)
    run(["chown", "-R", f"{uid}:{gid}", str(repo)])  # owned by the step's uid, or git calls it dubious
    step = render_step(task, "clone", {"URL": "file:///src/repo", "REVISION": "main"}, {"output"})
    tools = _pushed(release, "catalog-tools")
    assert step.image == f"{tools['reference']}@{tools['digest']}"  # the pinned default
    out, results = tmp_path / "output", tmp_path / "results"
    for d in (out, results):
        d.mkdir()
        d.chmod(0o777)
    image_config = skopeo_inspect(_by_digest(tools), config=True)["config"]
    p = _run_step(tools_rootfs, tmp_path, step, [BindMount(str(repo), "/src/repo", readonly=True),
                                                 BindMount(str(out), "/workspace/output"),
                                                 BindMount(str(results), "/tekton/results")], image_config,
                  user=user)
    assert p.returncode == 0, p.stdout + p.stderr
    assert (results / "COMMIT").read_text() == commit
    assert (out / "Dockerfile").read_text() == "FROM scratch\n"
    st = (out / "Dockerfile").stat()
    assert (st.st_uid, st.st_gid) == (uid, gid)
    nss = tmp_path / "home/.nss/passwd"     # the step's HOME (/tekton/home)
    if user:   # no passwd entry for OpenShift's uid: the image's nss_wrapper gives ssh one
        assert f"git-clone:x:{uid}:0:git-clone:/tekton/home:/bin/sh" in nss.read_text().splitlines()
        assert "cannot be preloaded" not in p.stdout + p.stderr
    else:
        assert not nss.exists()


def test_released_digest_check_step_runs_in_the_helper_image(release, registry, tools_rootfs, tmp_path):
    pipeline = yaml.safe_load((release["catalog_path"] / "pipelines/build-and-push/0.1/build-and-push.yaml").read_text())
    [verify] = [t for t in pipeline["spec"]["tasks"] if t["name"] == "verify-digest"]
    task = {"metadata": {"name": "verify-digest"}, "spec": verify["taskSpec"]}
    skopeo_image = next(p["default"] for p in pipeline["spec"]["params"] if p["name"] == "skopeo-image")
    tools, executor = _pushed(release, "catalog-tools"), _pushed(release, "executor")
    assert skopeo_image == f"{tools['reference']}@{tools['digest']}"
    check = [s["name"] for s in task["spec"]["steps"]][0]
    step = render_step(task, check, {"IMAGE_URL": executor["reference"], "IMAGE_DIGEST": executor["digest"],
                                     "TLS_VERIFY": "false", "skopeo-image": skopeo_image}, set())
    image_config = skopeo_inspect(_by_digest(tools), config=True)["config"]
    p = _run_step(tools_rootfs, tmp_path, step, [], image_config)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"{executor['reference']} -> {executor['digest']} resolves" in p.stdout + p.stderr


# ------------------------------------------------- both platforms (opt-in: ~25 min the first time)
MULTIARCH_ENV = "EXECUTOR_TEST_RELEASE_MULTIARCH"
CACHE = Path(os.environ.get("EXECUTOR_TEST_CACHE", Path.home() / ".cache/executor-tests"))


def _arm64_python_base(registry, tmp: Path) -> str:
    """REGISTRY/python:3.11-slim-arm64: debootstrap --arch=arm64 (second stage under qemu; the
    rootfs tarball is cached), packed with umoci, pushed with skopeo."""
    tarball = CACHE / "python-bookworm-minbase-arm64.tar"
    if not tarball.is_file():
        root = tmp / "root"
        run(["debootstrap", "--arch=arm64", "--variant=minbase",
             "--include=python3,python3-venv,python3-pip,ca-certificates", "bookworm", str(root),
             "http://deb.debian.org/debian"], timeout=3600)
        run(["sh", "-c", f"rm -rf {root}/var/cache/apt/archives/*.deb {root}/var/lib/apt/lists/* {root}/dev/*"])
        CACHE.mkdir(parents=True, exist_ok=True)
        run(["tar", "-C", str(root), "--numeric-owner", "-cf", f"{tarball}.partial", "."])
        os.replace(f"{tarball}.partial", tarball)
    pack = tmp / "pack"
    pack.mkdir()
    for cmd in (["umoci", "init", "--layout", "oci"], ["umoci", "new", "--image", "oci:base"],
                ["umoci", "unpack", "--image", "oci:base", "bundle"],
                ["tar", "-C", "bundle/rootfs", "--numeric-owner", "-xf", str(tarball)],
                ["umoci", "repack", "--image", "oci:base", "bundle"],
                ["umoci", "config", "--image", "oci:base", "--config.cmd", "python3", "--os", "linux",
                 "--architecture", "arm64", "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                ["skopeo", "copy", "-q", "--dest-tls-verify=false", "oci:oci:base",
                 f"docker://{registry.host}/python:3.11-slim-arm64"]):
        run(cmd, cwd=pack, timeout=600)
    return f"{registry.host}/python:3.11-slim-arm64"


def _elf_machine(path: Path) -> int:
    """e_machine of an ELF file (62 x86-64, 183 AArch64)."""
    return int.from_bytes(path.read_bytes()[18:20], "little")


@pytest.mark.skipif(os.environ.get(MULTIARCH_ENV) != "1",
                    reason=f"two-platform release: ~12 min of emulated builds plus ~12 min of arm64 debootstrap "
                           f"the first time; set {MULTIARCH_ENV}=1 (needs qemu-user-static)")
def test_two_platform_release(registry, python_base, tmp_path):
    """linux/amd64 + linux/arm64: each image is an index of both, the catalog pins the index
    digests, and the arm64 images hold arm64 programs that run (under qemu)."""
    if not Path("/proc/sys/fs/binfmt_misc/qemu-aarch64").exists():
        pytest.skip("no qemu-aarch64 binfmt_misc handler (apt-get install qemu-user-static)")
    arm64 = _arm64_python_base(registry, tmp_path)
    multi = f"{registry.host}/python:3.11-slim-multi"
    run([sys.executable, "-m", "executor", "index", "--destination", multi, "--insecure-registry", registry.host,
         python_base, arm64])
    summary = _run_release(registry, multi, "linux/amd64,linux/arm64", tmp_path, "multi")
    text = "\n".join(f.read_text() for f in summary["catalog_path"].rglob("*.yaml"))
    assert tag_only_references(summary["catalog_path"]) == []
    for name, program in (("executor", "usr/bin/python3"), ("catalog-tools", "usr/bin/git")):
        e = _pushed(summary, name)
        index = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                                           f"docker://{_by_digest(e)}"], capture_output=True, check=True).stdout)
        assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
        by_arch = {m["platform"]["architecture"]: m["digest"] for m in index["manifests"]}
        assert set(by_arch) == {"amd64", "arm64"}
        assert f"{e['reference']}@{e['digest']}" in text  # the catalog pins the index
        repo = e["reference"].rsplit(":", 1)[0]
        rootfs = umoci_unpack(f"{repo}@{by_arch['arm64']}", tmp_path / f"{name}-arm64") / "rootfs"
        assert _elf_machine((rootfs / program).resolve()) == 183, program
    p = subprocess.run(["chroot", str(tmp_path / "executor-arm64/bundle/rootfs"), "/opt/executor/bin/executor",
                        "version"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0 and "executor" in p.stdout, p.stdout + p.stderr
