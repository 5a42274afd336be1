"""A runc ``config.json`` shaped like a plain Kubernetes pod container (containerd CRI defaults).

Pure functions: no files, no processes. The caller passes ``runc spec`` output (OCI runtime-spec
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
from dataclasses import dataclass

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
               hostname: str = "pod") -> dict:
    """Return a new config.json dict: ``runc_spec`` (``runc spec`` output, not modified) made pod-like.

    ``image_config`` is the image config's ``config`` object (Entrypoint, Cmd, Env, WorkingDir);
    ``command``/``args``/``env``/``working_dir`` are the container's fields; ``mounts`` are appended
    after the spec's own mounts; ``caps`` (``CAP_*`` names) fill bounding, effective and permitted.
    Raises ValueError for a capability name without the ``CAP_`` prefix.
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
    return cfg
