"""A runc ``config.json`` shaped like a plain Kubernetes pod container (containerd CRI defaults).

:func:`pod_config` and its helpers are pure (no files, no processes); :func:`runc_spec` and
:func:`run_pod` at the end run ``runc``. The caller passes ``runc spec`` output (OCI runtime-spec
``config.md``) and the image's config (OCI image-spec ``config.md``: ``config.Entrypoint``, ``Cmd``,
``Env``, ``WorkingDir``) and gets back the dict to write as the bundle's ``config.json``.

What "pod-like" means here (containerd ``pkg/oci`` default spec + Kubernetes defaults):

* root (uid 0, gid 0), not privileged: no CAP_SYS_ADMIN, only :data:`CONTAINERD_DEFAULT_CAPS` in the
  bounding, effective and permitted sets (inheritable and ambient empty, as containerd does since
  CVE-2022-24769);
* ``noNewPrivileges`` false (Kubernetes ``allowPrivilegeEscalation`` defaults to true);
* a writable root filesystem (``readOnlyRootFilesystem`` defaults to false);
* runc's masked/read-only paths, device cgroup rules and mounts kept (they match containerd's);
* optionally the host network namespace (``hostNetwork: true``), so a loopback registry is reachable;
* argv chosen the way Kubernetes does (:func:`k8s_argv`), env = image env overridden by the container's.
"""

from __future__ import annotations

import copy
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

#: containerd's default capability set (containerd pkg/oci/spec.go ``defaultUnixCaps``),
#: what a Kubernetes container gets without securityContext.capabilities.
CONTAINERD_DEFAULT_CAPS: tuple[str, ...] = (
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
)


@dataclass(frozen=True)
class BindMount:
    """A host directory or file bind-mounted at ``destination`` (like a pod volumeMount)."""

    source: str
    destination: str
    readonly: bool = False

    def to_oci(self) -> dict:
        """The OCI runtime-spec ``mounts[]`` entry (config.md "Mounts")."""
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": ["rbind", "ro" if self.readonly else "rw"]}


def k8s_argv(image_config: dict, command: list[str] | None = None, args: list[str] | None = None) -> list[str]:
    """The process argv Kubernetes runs (Kubernetes "Define a command and arguments" rules).

    ``image_config`` is the image config's ``config`` object (``Entrypoint``/``Cmd`` lists or None).
    ``command`` replaces the ENTRYPOINT and drops the CMD; ``args`` replaces the CMD.
    Raises ValueError when the result is empty.
    """
    entrypoint = list(image_config.get("Entrypoint") or [])
    cmd = list(image_config.get("Cmd") or [])
    if command:
        argv = list(command) + list(args or [])
    elif args:
        argv = entrypoint + list(args)
    else:
        argv = entrypoint + cmd
    if not argv:
        raise ValueError("no command: the image has no ENTRYPOINT/CMD and none was given")
    return argv


def merge_env(image_env: list[str], env: dict[str, str] | None) -> list[str]:
    """Image ``KEY=VALUE`` list with the container's ``env`` overriding by name (order kept)."""
    out: dict[str, str] = {}
    for item in image_env or []:
        k, _, v = item.partition("=")
        out[k] = v
    out.update(env or {})
    return [f"{k}={v}" for k, v in out.items()]


def pod_config(runc_spec: dict, image_config: dict, *, command: list[str] | None = None,
               args: list[str] | None = None, env: dict[str, str] | None = None,
               working_dir: str | None = None, mounts: list[BindMount] | tuple = (),
               caps: tuple[str, ...] | list[str] = CONTAINERD_DEFAULT_CAPS, host_network: bool = True,
               hostname: str = "pod", memory_limit: int | None = None) -> dict:
    """Return a new config.json dict: ``runc_spec`` (``runc spec`` output, not modified) made pod-like.

    ``image_config`` is the image config's ``config`` object (Entrypoint, Cmd, Env, WorkingDir);
    ``command``/``args``/``env``/``working_dir`` are the container's fields; ``mounts`` are appended
    after the spec's own mounts; ``caps`` (``CAP_*`` names) fill bounding, effective and permitted.
    ``memory_limit`` (bytes, see :func:`parse_quantity`) becomes the cgroup memory limit
    (``resources.limits.memory``). Raises ValueError for a capability name without ``CAP_``.
    """
    bad = [c for c in caps if not c.startswith("CAP_")]
    if bad:
        raise ValueError(f"capability names need the CAP_ prefix: {bad}")
    cfg = copy.deepcopy(runc_spec)
    proc = cfg.setdefault("process", {})
    proc["terminal"] = False
    proc["user"] = {"uid": 0, "gid": 0}
    proc["args"] = k8s_argv(image_config, command, args)
    proc["env"] = merge_env(image_config.get("Env") or [], env)
    proc["cwd"] = working_dir or image_config.get("WorkingDir") or "/"
    proc["capabilities"] = {"bounding": list(caps), "effective": list(caps), "permitted": list(caps),
                            "inheritable": [], "ambient": []}
    proc["noNewPrivileges"] = False
    cfg["root"] = {"path": "rootfs", "readonly": False}
    cfg["hostname"] = hostname
    cfg["mounts"] = list(cfg.get("mounts") or []) + [m.to_oci() for m in mounts]
    linux = cfg.setdefault("linux", {})
    if host_network:
        linux["namespaces"] = [ns for ns in linux.get("namespaces") or [] if ns.get("type") != "network"]
    linux.pop("seccomp", None)
    if memory_limit is not None:
        linux.setdefault("resources", {})["memory"] = {"limit": int(memory_limit)}
    return cfg


def parse_quantity(q: str | int) -> int:
    """Bytes of a Kubernetes memory quantity ("512Mi", "4Gi", "1G", "1000"); Kubernetes
    "Resource Management for Pods and Containers" (binary Ki/Mi/Gi/Ti, decimal k/M/G/T).
    Raises ValueError for anything else."""
    if isinstance(q, int):
        return q
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
             "k": 10 ** 3, "M": 10 ** 6, "G": 10 ** 9, "T": 10 ** 12}
    for suffix in sorted(units, key=len, reverse=True):
        if q.endswith(suffix) and q[: -len(suffix)].isdigit():
            return int(q[: -len(suffix)]) * units[suffix]
    if q.isdigit():
        return int(q)
    raise ValueError(f"unsupported memory quantity {q!r}")


def caps_for(security_context: dict | None, base: tuple[str, ...] = CONTAINERD_DEFAULT_CAPS) -> tuple[str, ...]:
    """Capabilities a container gets from a Kubernetes ``securityContext`` (``capabilities.add`` /
    ``drop`` names without the CAP_ prefix, "ALL" allowed in drop). Raises ValueError for
    ``privileged: true``, which this pod-like runner does not emulate."""
    sc = security_context or {}
    if sc.get("privileged"):
        raise ValueError("privileged containers are not emulated (and must not be needed)")
    c = sc.get("capabilities") or {}
    drop = {("CAP_" + d.upper()) for d in c.get("drop") or []}
    out = [] if "CAP_ALL" in drop else [x for x in base if x not in drop]
    for a in c.get("add") or []:
        name = "CAP_" + a.upper()
        if name not in out:
            out.append(name)
    return tuple(out)


# ----------------------------------------------------------------------------- running (impure)
def run_pod(image_rootfs: Path, workdir: Path, config: dict, *, name: str, timeout: int = 600,
            files: dict[str, str] | None = None) -> "subprocess.CompletedProcess":
    """Run one container under ``runc`` the way a kubelet would start it; return the completed
    process (stdout/stderr text). Impure: mounts, files, processes.

    ``image_rootfs`` is an unpacked image root (e.g. ``umoci unpack``'s ``rootfs``), used as the
    read-only lower layer of an overlayfs with a fresh writable upper layer in ``workdir``
    (containerd's overlayfs snapshotter); when overlayfs cannot be mounted, a copy is used.
    ``config`` is the config.json dict (usually from :func:`pod_config`); ``root.path`` is set here.
    ``files`` (absolute in-container path -> text, mode 0600) are written into the writable layer
    before the start, the way Tekton's entrypoint copies the ServiceAccount's credentials to
    ``$HOME/.docker/config.json`` before running the step.
    """
    workdir = Path(workdir)
    bundle, upper, work = workdir / "bundle", workdir / "upper", workdir / "work"
    for d in (bundle / "rootfs", upper, work):
        d.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o",
         f"lowerdir={image_rootfs},upperdir={upper},workdir={work}", str(bundle / "rootfs")],
        capture_output=True, text=True).returncode == 0
    if not mounted:
        subprocess.run(["cp", "-a", f"{image_rootfs}/.", str(bundle / "rootfs")], check=True)
    for path, text in (files or {}).items():
        target = bundle / "rootfs" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o600)
    cfg = dict(config)
    cfg["root"] = {"path": str(bundle / "rootfs"), "readonly": False}
    (bundle / "config.json").write_text(json.dumps(cfg, indent=1))
    try:
        return subprocess.run(["runc", "run", "--bundle", str(bundle), name], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["runc", "delete", "--force", name], capture_output=True)
        if mounted:
            subprocess.run(["umount", str(bundle / "rootfs")], capture_output=True)


def runc_spec() -> dict:
    """``runc spec`` output (runc's default OCI config), generated in a scratch directory."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["runc", "spec"], cwd=d, check=True, capture_output=True)
        return json.loads((Path(d) / "config.json").read_text())
