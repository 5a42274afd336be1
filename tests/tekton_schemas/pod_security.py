"""The container-level rules of the Kubernetes Pod Security Standards (kubernetes.io/docs/concepts/
security/pod-security-standards, policy version v1.25+) that a Tekton step's securityContext decides.

Pod-level fields (host namespaces, volumes, sysctls) are not a step's to set; Tekton's own init
containers meet "restricted" only with the `set-security-context` feature flag (tekton/README.md).
"""

from __future__ import annotations

#: Capabilities "baseline" lets a container add (the container runtimes' default set).
BASELINE_CAPS = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                           "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def baseline_violations(sc: dict) -> list[str]:
    out = []
    if sc.get("privileged"):
        out.append("privileged")
    added = set((sc.get("capabilities") or {}).get("add") or [])
    if added - BASELINE_CAPS:
        out.append(f"adds capabilities {sorted(added - BASELINE_CAPS)}")
    if (sc.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append("seccompProfile Unconfined")
    if sc.get("procMount") not in (None, "Default"):
        out.append(f"procMount {sc['procMount']}")
    if (sc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("windows hostProcess")
    return out


def restricted_violations(sc: dict, pod_sc: dict | None = None) -> list[str]:
    """``sc``: the container's securityContext; ``pod_sc``: the pod's (its runAsNonRoot, runAsUser
    and seccompProfile apply when the container does not set them)."""
    pod_sc = pod_sc or {}
    out = baseline_violations(sc)
    if sc.get("allowPrivilegeEscalation") is not False:
        out.append("allowPrivilegeEscalation is not false")
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    if non_root is not True:
        out.append("runAsNonRoot is not true")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
        out.append("runAsUser 0")
    seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
    if seccomp not in ("RuntimeDefault", "Localhost"):
        out.append("seccompProfile is not RuntimeDefault or Localhost")
    caps = sc.get("capabilities") or {}
    if "ALL" not in (caps.get("drop") or []):
        out.append("capabilities do not drop ALL")
    if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
        out.append("adds capabilities other than NET_BIND_SERVICE")
    return out


def level(sc: dict, pod_sc: dict | None = None) -> str:
    """The strictest Pod Security level the container's securityContext meets."""
    if not restricted_violations(sc, pod_sc):
        return "restricted"
    if not baseline_violations(sc):
        return "baseline"
    return "privileged"


def step_security_context(task: dict, step_name: str) -> dict:
    """The securityContext a step runs with: the stepTemplate's, overridden field by field by the
    step's (Tekton merges stepTemplate into each step, the step winning)."""
    spec = task["spec"]
    merged = dict((spec.get("stepTemplate") or {}).get("securityContext") or {})
    step = next(s for s in spec["steps"] if s["name"] == step_name)
    merged.update(step.get("securityContext") or {})
    return merged
