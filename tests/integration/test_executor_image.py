"""The executor image (Dockerfile.executor), built by the executor itself, then run as a plain
Kubernetes pod container would run it: under ``runc`` as root with only containerd's default
capabilities (no CAP_SYS_ADMIN, not privileged), host network, writable overlayfs root.

* the image: built from a local "python slim"-like base (scripts/make-python-image.sh, since there
  is no Docker Hub here), pushed to the session's loopback registry; config, CA bundle, and that
  this machine's TLS-proxy CA (a RUN --mount=type=secret of the builder stage only, so pip can
  reach PyPI) is in no byte of the pushed image;
* the product as a non-privileged step: the image builds a Dockerfile with RUN steps from a
  bind-mounted workspace, pushes it, logs userns RUN isolation (no CAP_SYS_ADMIN, no seccomp
  profile; runc's masked /proc refuses a fresh one, so the RUN's /proc is empty); the result is
  checked with skopeo, umoci and runc; as runAsUser 1000 with no capabilities and no privilege
  escalation (Pod Security restricted) it builds a Dockerfile without RUN; as runAsUser 1000 with
  privilege escalation allowed (no effective capabilities, the default bounding set, no seccomp
  profile) it builds RUN steps rootless, through the image's newuidmap/newgidmap (file
  capabilities) and its executor:100000:65536 ranges, and falls back with one line when refused;
* the kaniko-build Task's step run the way Tekton runs it (tests/support/tekton_step.py): Tekton's
  substitution, the script in /tekton/scripts, source workspace at /workspace/source, results at
  /tekton/results; IMAGE_DIGEST must equal the registry's digest and IMAGE_URL the pushed reference.

The module builds the executor image once (~30 s: pip downloads the dependencies from PyPI); the
python base's debootstrap rootfs is cached in ~/.cache/executor-tests (first run ~90 s more).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import shutil
import ssl
import textwrap
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.support.pod import (CONTAINERD_DEFAULT_CAPS, BindMount, caps_for, parse_quantity, pod_config,
                               run_pod, runc_spec)
from tests.support.registry_server import start_custom_registry
from tests.support.tekton_step import render_step, write_scripts
from tests.support.tools import REPO, SCRIPTS, have, run, run_executor, runc_run, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

TASK_PATH = REPO / "tekton/tasks/kaniko-build/0.1/kaniko-build.yaml"
HOST_CA_DIR = Path("/usr/local/share/ca-certificates")
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy")
CHROOT_LOG = "RUN isolation: userns"  # what a default-capability pod without a seccomp profile gets
# CapEff of a process holding exactly CONTAINERD_DEFAULT_CAPS (bit numbers from linux/capability.h).
CAP_BITS = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
            "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10,
            "CAP_NET_RAW": 13, "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29,
            "CAP_SETFCAP": 31}


def _host_ca_pems() -> list[str]:
    """PEM blocks of this machine's extra CAs (the TLS-intercepting proxy in front of PyPI)."""
    pems = []
    for crt in sorted(HOST_CA_DIR.glob("*.crt")) if HOST_CA_DIR.is_dir() else []:
        pems += re.findall(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----", crt.read_text(), re.S)
    return pems


def _pypi_reachable() -> str | None:
    """None when https://pypi.org answers (with this machine's trust store), else the error."""
    try:
        with urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15,
                                    context=ssl.create_default_context()) as r:
            r.read(1)
        return None
    except OSError as e:
        return str(e)


@dataclass
class ExecutorImage:
    """The pushed executor image: reference, digest, manifest, config, and an unpacked rootfs."""

    ref: str
    digest: str
    manifest: dict
    config: dict
    layout: Path
    rootfs: Path
    build_log: str

    @property
    def compressed_size(self) -> int:
        return sum(layer["size"] for layer in self.manifest["layers"])


@pytest.fixture(scope="module")
def python_base(registry) -> str:
    """``REGISTRY/python:3.11-slim``: debootstrap bookworm + python3, venv, pip, ca-certificates."""
    missing = have("debootstrap", "tar")
    if missing:
        pytest.skip(f"cannot make the python base image: {missing} missing (run scripts/install-deps.sh)")
    out = run([str(SCRIPTS / "make-python-image.sh"), registry.host, "python:3.11-slim"], timeout=900)
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def executor_image(registry, python_base, tmp_path_factory) -> ExecutorImage:
    """Build Dockerfile.executor with the executor (this checkout), push it, unpack it once."""
    err = _pypi_reachable()
    if err:
        pytest.skip(f"PyPI unreachable, the image's builder stage cannot pip install: {err}")
    work = tmp_path_factory.mktemp("executor-image")
    ref = f"{registry.host}/executor:test-{uuid.uuid4().hex[:8]}"
    args = ["--dockerfile", str(REPO / "Dockerfile.executor"), "--context", str(REPO),
            "--destination", ref, "--insecure-registry", registry.host,
            "--build-arg", f"BASE_IMAGE={python_base}", "--digest-file", str(work / "digest"),
            "--log-format", "text"]
    pems = _host_ca_pems()
    if pems:  # TEST ONLY: lets the builder stage's pip through this machine's TLS proxy
        (work / "pip_ca.pem").write_text("\n".join(pems) + "\n")
        args += ["--secret", f"id=pip_ca,src={work / 'pip_ca.pem'}"]
    args += [a for v in PROXY_VARS if os.environ.get(v) for a in ("--build-arg", v)]
    p = run_executor(args, timeout=900)
    digest = (work / "digest").read_text()
    manifest = skopeo_inspect(ref, raw=True)
    config = skopeo_inspect(ref, config=True)
    bundle = umoci_unpack(ref, work / "unpacked")
    return ExecutorImage(ref=ref, digest=digest, manifest=manifest, config=config,
                         layout=work / "unpacked" / "layout", rootfs=bundle / "rootfs",
                         build_log=p.stdout + p.stderr)


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / "sha256" / digest.split(":", 1)[1]


def _run_in_pod(image: ExecutorImage, tmp: Path, *, command=None, args=None, env=None, working_dir=None,
                mounts=(), caps=CONTAINERD_DEFAULT_CAPS, memory_limit=None, files=None):
    cfg = pod_config(runc_spec(), image.config["config"], command=command, args=args, env=env,
                     working_dir=working_dir, mounts=list(mounts), caps=caps, memory_limit=memory_limit)
    return run_pod(image.rootfs, tmp / f"pod-{uuid.uuid4().hex[:6]}", cfg, name=f"pod-{uuid.uuid4().hex[:10]}",
                   files=files)


def _assert_no_leaks(ref: str, tmp: Path, base_layers: int = 1) -> list[list[str]]:
    """Names in each layer of ``ref``; asserts that no layer after the base's ``base_layers``
    has anything under /dev, /proc or /sys, or /etc/resolv.conf or /etc/hosts (what chroot-mode
    RUN creates for the command and must remove before the snapshot)."""
    layout = tmp / f"raw-{uuid.uuid4().hex[:6]}"
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:x"])
    idx = json.loads((layout / "index.json").read_text())
    man = json.loads(_blob(layout, idx["manifests"][0]["digest"]).read_text())
    out = []
    for i, layer in enumerate(man["layers"]):
        names = run(["tar", "-tzf", str(_blob(layout, layer["digest"]))]).stdout.split()
        if i >= base_layers:
            assert not [n for n in names if n.startswith(("dev/", "proc/", "sys/", "etc/resolv.conf", "etc/hosts"))], names
        out.append(names)
    return out


# --------------------------------------------------------------------------- the image itself
def test_executor_image_config(executor_image, record_property):
    cfg = executor_image.config["config"]
    assert executor_image.digest == skopeo_inspect(executor_image.ref)["Digest"]
    assert cfg["Entrypoint"] == ["executor"]
    assert cfg["WorkingDir"] == "/workspace"
    assert cfg.get("User", "") in ("", "0", "0:0", "root")
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert "DOCKER_CONFIG" not in env  # creds-init's $HOME/.docker/config.json must stay visible
    assert env["PATH"].split(":")[0] == "/opt/executor/bin"
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    assert not any("pip_ca" in e.lower() or "PIP_CERT" in e for e in cfg["Env"])
    # the distro's CA bundle is present and the venv is complete (entry point + package)
    rootfs = executor_image.rootfs
    assert (rootfs / "etc/ssl/certs/ca-certificates.crt").stat().st_size > 100_000
    assert os.access(rootfs / "opt/executor/bin/executor", os.X_OK)
    assert list((rootfs / "opt/executor/lib").glob("python3*/site-packages/executor/cli.py"))
    assert not (rootfs / "src").exists()  # the builder stage's sources stay behind
    # rootless RUN as uid 1000: newuidmap/newgidmap with file capabilities instead of setuid root
    # (Dockerfile.executor says why), kept through the executor's own layer writing as a PAX
    # SCHILY.xattr.security.capability record (VFS_CAP_REVISION_2, effective, CAP_SETUID = bit 7 /
    # CAP_SETGID = bit 6), and through unpacking; subordinate ranges for "executor"
    layout = executor_image.layout
    idx = json.loads((layout / "index.json").read_text())
    man = json.loads(_blob(layout, idx["manifests"][0]["digest"]).read_text())
    listing = "".join(run(["tar", "-tvzf", str(_blob(layout, layer["digest"])), "--numeric-owner", "--xattrs",
                           "--xattrs-include=security.capability", "usr/bin/newuidmap", "usr/bin/newgidmap"],
                          check=False).stdout for layer in man["layers"])
    for tool, bit in (("newuidmap", 7), ("newgidmap", 6)):
        assert re.search(rf"^-rwxr-xr-x\* 0/0 .* usr/bin/{tool}$", listing, re.M), listing  # *: has xattrs
        want = (0x02000001).to_bytes(4, "little") + (1 << bit).to_bytes(4, "little") + bytes(12)
        assert os.getxattr(rootfs / "usr/bin" / tool, "security.capability") == want
    for f in ("subuid", "subgid"):
        assert "executor:100000:65536" in (rootfs / "etc" / f).read_text().splitlines()
    size = executor_image.compressed_size
    record_property("executor_image_compressed_bytes", size)
    print(f"\nexecutor image {executor_image.ref}@{executor_image.digest}: "
          f"{len(executor_image.manifest['layers'])} layers, {size} bytes compressed "
          f"({[layer['size'] for layer in executor_image.manifest['layers']]})")
    assert size < 150 * 1024 * 1024, f"executor image grew to {size} bytes compressed"


def test_executor_image_carries_no_host_ca(executor_image, tmp_path):
    """No layer (decompressed, every byte, whiteouts notwithstanding) and not the config contains
    any of this machine's extra CA certificates, though the builder stage was given them."""
    pems = _host_ca_pems()
    if not pems:
        pytest.skip(f"no extra CA in {HOST_CA_DIR} on this machine: nothing was passed, nothing to look for")
    # a distinctive base64 line from the middle of each certificate, and its DER bytes
    markers = [m for pem in pems for m in (pem.splitlines()[len(pem.splitlines()) // 2].encode(),
                                            base64.b64decode("".join(pem.splitlines()[1:-1]))[-64:])]
    # the builder stage did get the CA (as the RUN --mount=type=secret), else pip could not have run
    assert "secret 'pip_ca' not given" not in executor_image.build_log
    layout = executor_image.layout
    idx = json.loads((layout / "index.json").read_text())
    man = json.loads(_blob(layout, idx["manifests"][0]["digest"]).read_text())
    config_bytes = _blob(layout, man["config"]["digest"]).read_bytes()
    assert not [m for m in markers if m in config_bytes]
    for layer in man["layers"]:
        assert layer["mediaType"].endswith("gzip"), layer["mediaType"]
        assert not _gzip_contains(_blob(layout, layer["digest"]), markers), \
            f"host CA bytes found in layer {layer['digest']}"
    # the search itself finds the CA when it is there (a layer holding the PEM, as if copied in)
    planted = tmp_path / "planted.gz"
    with gzip.open(planted, "wb") as f:
        f.write(os.urandom(3 << 20) + pems[0].encode() + os.urandom(1000))
    assert _gzip_contains(planted, markers)


def _gzip_contains(path: Path, markers: list[bytes]) -> bool:
    """True when the decompressed stream of ``path`` contains any of ``markers`` (< 128 bytes)."""
    tail = b""
    with gzip.open(path) as f:
        while chunk := f.read(1 << 20):
            buf = tail + chunk
            if any(m in buf for m in markers):
                return True
            tail = buf[-128:]
    return False


# --------------------------------------------------------------- the product as a pod step
def test_pod_harness_is_unprivileged(executor_image, tmp_path):
    """The runc config really is the pod-like one: CapEff is containerd's default set and the
    executor's own probe cannot create a mount namespace there."""
    p = _run_in_pod(executor_image, tmp_path, command=["/bin/sh", "-c",
                    "grep -E '^Cap(Eff|Bnd|Prm):' /proc/self/status; id -u; "
                    "python3 -c 'from executor.engine.sandbox import detect_mode; print(detect_mode())'"])
    assert p.returncode == 0, p.stderr
    want = sum(1 << CAP_BITS[c] for c in CONTAINERD_DEFAULT_CAPS)
    caps = dict(re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", p.stdout, re.M))
    assert {k: int(v, 16) for k, v in caps.items()} == {"CapEff": want, "CapBnd": want, "CapPrm": want}
    assert p.stdout.splitlines()[-2:] == ["0", "userns"]


def test_executor_image_builds_and_pushes_as_unprivileged_pod(executor_image, registry, busybox, tmp_path):
    ws = tmp_path / "ws"
    (ws / "docker").mkdir(parents=True)
    (ws / "docker" / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {busybox}
        ARG GREETING=unset
        RUN echo "$GREETING" > /greeting && echo discarded > /dev/null && mkdir -p /app && id -u > /app/uid
        USER app
        RUN id -u > /tmp/uid-app && touch /tmp/owned-by-app
        USER root
        RUN chown app:app /app && chmod 0711 /app && ln -s /greeting /app/greeting-link
        COPY hello.txt /app/
        CMD ["sh", "-c", "cat /greeting /app/uid /tmp/uid-app /app/hello.txt && stat -c '%U %a' /app"]
        """))
    (ws / "hello.txt").write_text("hello from the workspace\n")
    dest = f"{registry.host}/pod/app:{uuid.uuid4().hex[:8]}"
    p = _run_in_pod(executor_image, tmp_path, args=[
        "--context", "/workspace/src", "--dockerfile", "docker/Dockerfile", "--destination", dest,
        "--insecure-registry", registry.host, "--build-arg", "GREETING=built in a pod",
        "--digest-file", "/workspace/src/digest", "--log-format", "text"],
        mounts=[BindMount(str(ws), "/workspace/src")])
    log = p.stdout + p.stderr
    assert p.returncode == 0, log
    assert CHROOT_LOG in log, log
    digest = (ws / "digest").read_text()
    assert skopeo_inspect(dest)["Digest"] == digest
    layers = _assert_no_leaks(dest, tmp_path)
    assert "tmp/owned-by-app" in layers[-3] and "greeting" in layers[1]
    bundle = umoci_unpack(dest, tmp_path / "built")
    rootfs = bundle / "rootfs"
    assert (rootfs / "tmp" / "owned-by-app").stat().st_uid == 1000
    assert os.readlink(rootfs / "app" / "greeting-link") == "/greeting"
    r = runc_run(bundle, f"t-{uuid.uuid4().hex[:8]}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "built in a pod\n0\n1000\nhello from the workspace\napp 711\n"


def test_chroot_run_layer_holds_only_what_the_command_changed(executor_image, registry, busybox, tmp_path):
    """The mount points and resolv.conf made for a pod's RUN leave no trace, not even an
    ``etc/`` or ``dev/`` directory entry (their ctime moves when the placeholders come and go)."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "Dockerfile").write_text(f"FROM {busybox}\nRUN echo x > /only-this\n")
    dest = f"{registry.host}/pod/noetc:{uuid.uuid4().hex[:8]}"
    p = _run_in_pod(executor_image, tmp_path, args=[
        "--context", "/workspace/src", "--destination", dest, "--insecure-registry", registry.host],
        mounts=[BindMount(str(ws), "/workspace/src")])
    assert p.returncode == 0, p.stdout + p.stderr
    assert CHROOT_LOG in p.stdout + p.stderr
    assert _assert_no_leaks(dest, tmp_path)[-1] == ["only-this"]


def test_executor_image_no_run_build_as_uid_1000_restricted(executor_image, registry, busybox, tmp_path):
    """runAsUser: 1000, every capability dropped, no privilege escalation (Pod Security
    "restricted"): a Dockerfile without RUN builds and pushes; owners land as written."""
    ws = tmp_path / "ws"
    ws.mkdir(mode=0o755)
    (ws / "Dockerfile").write_text(f"FROM {busybox}\nCOPY --chown=0:0 a.txt /app/a\n"
                                   "COPY --chown=1000:1000 a.txt /app/b\nUSER 1000\n")
    (ws / "a.txt").write_text("a\n")
    dest = f"{registry.host}/pod/restricted:{uuid.uuid4().hex[:8]}"
    cfg = pod_config(runc_spec(), executor_image.config["config"], caps=[],
                     mounts=[BindMount(str(ws), "/workspace/src")], args=["--context", "/workspace/src", "--destination", dest, "--insecure-registry", registry.host])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    cfg["process"]["noNewPrivileges"] = True
    p = run_pod(executor_image.rootfs, tmp_path / "pod-1000", cfg, name=f"pod-{uuid.uuid4().hex[:10]}")
    assert p.returncode == 0, p.stdout + p.stderr
    # the image's newuidmap/newgidmap and subordinate ranges are there, but no_new_privs voids them: one line says so
    assert re.findall(r"rootless: no user namespace \(.*\)", p.stderr) == [
        "rootless: no user namespace (newuidmap/newgidmap cannot work: no_new_privs is set "
        "(allowPrivilegeEscalation: false))"], p.stderr
    names = _assert_no_leaks(dest, tmp_path)
    assert names[-2:] == [["app/", "app/a"], ["app/", "app/b"]], names
    layout = tmp_path / "restricted-layout"
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:x"])
    owners = run(["sh", "-c", f"for b in {layout}/blobs/sha256/*; do tar -tvzf $b --numeric-owner 2>/dev/null; done"],
                 check=False)  # the manifest and config blobs are no tarballs: tar fails on them
    assert re.search(r"0/0 .* app/a$", owners.stdout, re.M) and re.search(r"1000/1000 .* app/b$", owners.stdout, re.M)


def test_executor_image_rootless_run_as_uid_1000(executor_image, registry, busybox, tmp_path):
    """runAsUser: 1000 with privilege escalation allowed (runc noNewPrivileges false), the default
    capability bounding set and, as Kubernetes gives a non-root process, no effective, permitted or
    ambient capabilities, no seccomp profile: the executor maps its user namespace with the image's
    setuid newuidmap/newgidmap and the executor user's 100000:65536 ranges, and a RUN that writes as
    root and chowns to 1000:1000 lands with those owners in the pushed layer."""
    ws = tmp_path / "ws"
    ws.mkdir(mode=0o755)
    (ws / "Dockerfile").write_text(f"FROM {busybox}\n"
                                   "RUN id -u > /etc/run-uid && mkdir -p /app && echo 1000 > /app/mine"
                                   " && chown 1000:1000 /app/mine && chmod 0640 /app/mine\n")
    dest = f"{registry.host}/pod/rootless:{uuid.uuid4().hex[:8]}"

    def pod_1000(dest: str, *extra: str, mounts=(), seccomp=None):
        cfg = pod_config(runc_spec(), executor_image.config["config"],
                         mounts=[BindMount(str(ws), "/workspace/src"), *mounts],
                         args=["--context", "/workspace/src", "--destination", dest, "--insecure-registry",
                               registry.host, "--log-format", "text", *extra])
        cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
        cfg["process"]["capabilities"].update(effective=[], permitted=[], inheritable=[], ambient=[])
        assert cfg["process"]["noNewPrivileges"] is False and "seccomp" not in cfg["linux"]
        if seccomp:
            cfg["linux"]["seccomp"] = seccomp
        return run_pod(executor_image.rootfs, tmp_path / f"pod-{uuid.uuid4().hex[:6]}", cfg,
                       name=f"pod-{uuid.uuid4().hex[:10]}")

    p = pod_1000(dest)
    log = p.stdout + p.stderr
    assert p.returncode == 0, log
    assert "rootless: no user namespace" not in log, log
    assert re.search(r"RUN isolation: \S+ .*in a user namespace: uid 0 = uid 1000 outside", log), log
    names = _assert_no_leaks(dest, tmp_path)
    layout = tmp_path / "rootless-layout"
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:x"])
    idx = json.loads((layout / "index.json").read_text())
    man = json.loads(_blob(layout, idx["manifests"][0]["digest"]).read_text())
    listing = run(["tar", "-tvzf", str(_blob(layout, man["layers"][-1]["digest"])), "--numeric-owner"]).stdout
    assert re.search(r"^-rw-r--r-- 0/0 .* etc/run-uid$", listing, re.M), listing
    assert re.search(r"^-rw-r----- 1000/1000 .* app/mine$", listing, re.M), listing
    assert re.search(r"^drwxr-xr-x 0/0 .* app/$", listing, re.M), listing
    assert sorted(names[-1]) == ["app/", "app/mine", "etc/", "etc/run-uid"], names[-1]
    rootfs = umoci_unpack(dest, tmp_path / "built") / "rootfs"
    assert (rootfs / "etc" / "run-uid").read_text() == "0\n"  # root of the RUN's namespace
    # newuidmap refused (here: a copy without its file capability mounted over it): one line says
    # so, the executor carries on unchanged as uid 1000 and a Dockerfile without RUN still builds
    plain = tmp_path / "newuidmap-without-caps"
    shutil.copyfile(executor_image.rootfs / "usr/bin/newuidmap", plain)
    plain.chmod(0o755)
    (ws / "norun.Dockerfile").write_text(f"FROM {busybox}\nCOPY --chown=1000:1000 norun.Dockerfile /app/d\n")
    p = pod_1000(f"{registry.host}/pod/fallback:{uuid.uuid4().hex[:8]}", "--dockerfile", "norun.Dockerfile",
                 mounts=[BindMount(str(plain), "/usr/bin/newuidmap", readonly=True)])
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [x for x in p.stderr.splitlines() if "rootless: no user namespace" in x]
    assert len(lines) == 1 and "newuidmap: write to uid_map failed: Operation not permitted" in lines[0] \
        and lines[0].endswith("continuing as uid 1000: a Dockerfile without RUN builds, a RUN step fails"), p.stderr
    # unshare refused by seccomp (as containerd's RuntimeDefault does without CAP_SYS_ADMIN): the
    # same one line; the Dockerfile with RUN then fails in one error line naming the missing piece
    deny_unshare = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                    "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    p = pod_1000(f"{registry.host}/pod/fallback:{uuid.uuid4().hex[:8]}", seccomp=deny_unshare)
    assert p.returncode == 1, p.stdout + p.stderr
    assert [x for x in p.stderr.splitlines() if "rootless: no user namespace" in x or x.startswith("error")] == [
        "WARN[executor] rootless: no user namespace (unshare(CLONE_NEWUSER) failed: Operation not permitted "
        "(user namespaces disabled, or refused by seccomp)); continuing as uid 1000: a Dockerfile without RUN "
        "builds, a RUN step fails",
        "error: RUN needs root or a rootless user namespace, and this executor runs as uid 1000 (the rootless user "
        "namespace could not be entered: see the 'rootless:' line above); run it as root, or as a user with "
        "subordinate ids (usermod --add-subuids/--add-subgids) who may use newuidmap/newgidmap, or build without "
        "RUN"], p.stderr


# ------------------------------------------------------------ the Tekton Task's step, for real
@pytest.fixture(scope="module")
def kaniko_task() -> dict:
    if not TASK_PATH.is_file():
        pytest.skip(f"{TASK_PATH.relative_to(REPO)} does not exist yet")
    return yaml.safe_load(TASK_PATH.read_text())


def _run_kaniko_step(image: ExecutorImage, task: dict, tmp: Path, params: dict, *, bound=("source",),
                     extra_mounts=(), files=None):
    """Run the Task's build-and-push step as Tekton would: substitution, script in
    /tekton/scripts (read-only), source workspace at /workspace/source, results at /tekton/results,
    the step's securityContext capabilities and memory limit. ``source`` must exist under ``tmp``."""
    results, scripts = tmp / "results", tmp / "scripts"
    results.mkdir()
    step = render_step(task, "build-and-push", {"BUILDER_IMAGE": image.ref, **params}, set(bound))
    assert step.image == image.ref
    write_scripts(step, scripts)
    limits = (step.compute_resources or {}).get("limits") or {}
    p = _run_in_pod(image, tmp, command=step.command, args=step.args, env=step.env,
                    working_dir=step.working_dir, caps=caps_for(step.security_context),
                    memory_limit=parse_quantity(limits["memory"]) if "memory" in limits else None,
                    mounts=[BindMount(str(tmp / "source"), "/workspace/source"),
                            BindMount(str(results), "/tekton/results"),
                            BindMount(str(scripts), "/tekton/scripts", readonly=True), *extra_mounts],
                    files=files)
    return p, results


def test_tekton_kaniko_build_step_in_pod(executor_image, kaniko_task, registry, busybox, tmp_path):
    source = tmp_path / "source"
    (source / "app").mkdir(parents=True)
    (source / "app" / "Containerfile").write_text(textwrap.dedent(f"""\
        FROM {busybox}
        ARG GREETING
        ARG NAME
        RUN printf '%s, %s\\n' "$GREETING" "$NAME" > /greeting && mkdir /data && chown app /data
        USER app
        RUN id -un > /data/who
        CMD ["cat", "/greeting", "/data/who"]
        """))
    image = f"{registry.host}/tekton/app:v1"
    p, results = _run_kaniko_step(executor_image, kaniko_task, tmp_path, {
        "IMAGE": image, "DOCKERFILE": "app/Containerfile", "CONTEXT": "./",
        "BUILD_ARGS": ["GREETING=hello from tekton", "NAME=a b  c"],
        "EXTRA_ARGS": [f"--insecure-registry={registry.host}", "--label=team=a", "", "--log-format=text"]})
    log = p.stdout + p.stderr
    assert p.returncode == 0, log
    assert CHROOT_LOG in log, log
    digest = (results / "IMAGE_DIGEST").read_text()
    url = (results / "IMAGE_URL").read_text()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest), digest
    assert digest == skopeo_inspect(image)["Digest"]
    assert url == image
    assert f"kaniko-build: pushed {image}@{digest}" in log  # the script ran to its end
    cfg = skopeo_inspect(image, config=True)["config"]
    assert cfg["Labels"] == {"team": "a"}
    _assert_no_leaks(image, tmp_path)
    bundle = umoci_unpack(f"{image.rsplit(':', 1)[0]}@{digest}", tmp_path / "built")
    r = runc_run(bundle, f"t-{uuid.uuid4().hex[:8]}")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hello from tekton, a b  c\napp\n"


AUTH_USER, AUTH_PASSWORD = "tekton-bot", "pa55-w0rd"


@pytest.fixture(scope="module")
def auth_registry(tools_present, tmp_path_factory):
    """A docker-registry requiring htpasswd basic auth (plain HTTP, loopback)."""
    if have("htpasswd"):
        pytest.skip("htpasswd (apache2-utils) missing")
    state = tmp_path_factory.mktemp("authreg")
    (state / "htpasswd").write_text(run(["htpasswd", "-Bbn", AUTH_USER, AUTH_PASSWORD]).stdout)
    reg = start_custom_registry(state, auth={"htpasswd": {"realm": "executor-test", "path": str(state / "htpasswd")}})
    yield reg
    reg.stop()


@pytest.mark.parametrize("creds", ["serviceaccount", "dockerconfig-workspace", "none"])
def test_tekton_step_registry_credentials(executor_image, kaniko_task, registry, auth_registry, busybox,
                                          tmp_path, creds):
    """Both ways Tekton hands credentials to the step: the ServiceAccount's docker secret, which
    Tekton's entrypoint copies to $HOME/.docker/config.json (the image must not set DOCKER_CONFIG
    elsewhere), and a bound ``dockerconfig`` workspace holding a kubernetes.io/dockerconfigjson
    Secret's ``.dockerconfigjson``. Without either, the push is refused (401)."""
    (tmp_path / "source").mkdir()
    (tmp_path / "source" / "Dockerfile").write_text(f"FROM {busybox}\nRUN echo private > /private\n")
    auth = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    config = json.dumps({"auths": {auth_registry.host: {"auth": auth}}})
    files, mounts, bound = None, [], ["source"]
    if creds == "serviceaccount":
        files = {"/root/.docker/config.json": config}
    elif creds == "dockerconfig-workspace":
        secret = tmp_path / "secret"
        secret.mkdir()
        (secret / ".dockerconfigjson").write_text(config)
        mounts, bound = [BindMount(str(secret), "/workspace/dockerconfig", readonly=True)], ["source", "dockerconfig"]
    image = f"{auth_registry.host}/private/app:{creds}"
    p, results = _run_kaniko_step(executor_image, kaniko_task, tmp_path, {
        "IMAGE": image, "EXTRA_ARGS": [f"--insecure-registry={registry.host}",
                                       f"--insecure-registry={auth_registry.host}", "--log-format=text"]},
        bound=bound, extra_mounts=mounts, files=files)
    log = p.stdout + p.stderr
    if creds == "none":
        assert p.returncode != 0, log
        assert "401" in log or "unauthorized" in log.lower() or "credentials" in log.lower(), log
        assert not (results / "IMAGE_DIGEST").exists() or not (results / "IMAGE_DIGEST").read_text()
        return
    assert p.returncode == 0, log
    digest = (results / "IMAGE_DIGEST").read_text()
    assert (results / "IMAGE_URL").read_text() == image
    got = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"{AUTH_USER}:{AUTH_PASSWORD}",
                          f"docker://{image}"]).stdout)
    assert got["Digest"] == digest


def test_tekton_step_cache_workspace(executor_image, kaniko_task, registry, busybox, tmp_path):
    """Case ``cache-workspace``: the Task's optional ``cache`` workspace bound to one directory for
    two runs of the step. The first run warms base-images/ (`executor warm`) and fills the layer
    cache (an OCI layout under layers/); the second logs a cache hit for every step, takes its
    base image from base-images/ and pushes the same digest."""
    cache = tmp_path / "cache"
    cache.mkdir()
    image = f"{registry.host}/tekton/cached:{uuid.uuid4().hex[:8]}"
    runs = []
    for n in (1, 2):
        run_dir = tmp_path / f"run{n}"
        (run_dir / "source").mkdir(parents=True)
        (run_dir / "source" / "Dockerfile").write_text(f"FROM {busybox}\nRUN echo cached > /cached\nCOPY f /f\n")
        (run_dir / "source" / "f").write_text("f\n")
        p, results = _run_kaniko_step(executor_image, kaniko_task, run_dir, {
            "IMAGE": image, "EXTRA_ARGS": [f"--insecure-registry={registry.host}", "--log-format=text",
                                           "--cache-copy-layers"]},
            bound=("source", "cache"), extra_mounts=[BindMount(str(cache), "/workspace/cache")])
        log = p.stdout + p.stderr
        assert p.returncode == 0, log
        runs.append((log, (results / "IMAGE_DIGEST").read_text()))
    (log1, d1), (log2, d2) = runs
    hits = re.compile(r"cache (hit|miss) [0-9a-f]{12}: (.*)$", re.M)
    assert [m.group(1) for m in hits.finditer(log1)] == ["miss", "miss"], log1
    assert f"cached {busybox}" in log1, log1
    assert [m.group(1) for m in hits.finditer(log2)] == ["hit", "hit"], log2
    assert f"base image {busybox} from the local cache" in log2, log2
    assert d1 == d2 == skopeo_inspect(image)["Digest"]
    idx = json.loads((cache / "layers" / "index.json").read_text())
    names = [m["annotations"]["org.opencontainers.image.ref.name"] for m in idx["manifests"]]
    keys = [n for n in names if not n.startswith(("trail-", "pathindex-"))]
    assert len(keys) == 3  # two steps and the final config (besides the trail and layers' path indexes)
    assert len([n for n in names if n.startswith("trail-")]) == 1  # the one trail the miss explanations read
    run(["skopeo", "inspect", f"oci:{cache / 'layers'}:{keys[0]}"])
