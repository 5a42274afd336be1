"""tests/support/pod.py: the pod-like runc config.json, built from a `runc spec`-shaped dict."""

from __future__ import annotations

import copy

import pytest

from tests.support.pod import (CONTAINERD_DEFAULT_CAPS, BindMount, caps_for, k8s_argv, merge_env,
                               parse_quantity, pod_config)

# The shape of `runc spec` (runc 1.1) output, trimmed to what pod_config touches.
RUNC_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {
        "terminal": True, "user": {"uid": 0, "gid": 0}, "args": ["sh"],
        "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
        "cwd": "/",
        "capabilities": {k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "inheritable", "permitted", "ambient")},
        "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
        "noNewPrivileges": True,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "runc",
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "linux": {
        "resources": {"devices": [{"allow": False, "access": "rwm"}]},
        "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
        "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
    },
}
IMAGE = {"Entrypoint": ["executor"], "Cmd": None, "WorkingDir": "/workspace",
         "Env": ["PATH=/opt/executor/bin:/usr/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"]}


def test_pod_config_is_root_with_containerd_caps_host_network_writable_root():
    spec = copy.deepcopy(RUNC_SPEC)
    cfg = pod_config(spec, IMAGE, args=["--context", "/workspace/src"],
                     mounts=[BindMount("/host/ws", "/workspace/src"), BindMount("/host/s", "/tekton/scripts", True)])
    assert spec == RUNC_SPEC  # input untouched
    p = cfg["process"]
    assert p["user"] == {"uid": 0, "gid": 0} and p["terminal"] is False
    assert p["args"] == ["executor", "--context", "/workspace/src"]
    assert p["cwd"] == "/workspace"
    assert p["env"] == IMAGE["Env"]
    for kind in ("bounding", "effective", "permitted"):
        assert p["capabilities"][kind] == list(CONTAINERD_DEFAULT_CAPS)
    assert p["capabilities"]["inheritable"] == [] and p["capabilities"]["ambient"] == []
    assert "CAP_SYS_ADMIN" not in CONTAINERD_DEFAULT_CAPS and len(CONTAINERD_DEFAULT_CAPS) == 14
    assert p["noNewPrivileges"] is False
    assert p["rlimits"] == RUNC_SPEC["process"]["rlimits"]
    assert cfg["root"] == {"path": "rootfs", "readonly": False}
    assert [ns["type"] for ns in cfg["linux"]["namespaces"]] == ["pid", "ipc", "uts", "mount"]
    assert cfg["linux"]["maskedPaths"] == ["/proc/kcore"] and cfg["linux"]["readonlyPaths"] == ["/proc/sys"]
    assert cfg["linux"]["resources"] == {"devices": [{"allow": False, "access": "rwm"}]}
    assert cfg["mounts"] == [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/workspace/src", "type": "bind", "source": "/host/ws", "options": ["rbind", "rw"]},
        {"destination": "/tekton/scripts", "type": "bind", "source": "/host/s", "options": ["rbind", "ro"]},
    ]


def test_pod_config_keeps_network_namespace_unless_host_network_and_sets_memory_limit():
    cfg = pod_config(RUNC_SPEC, IMAGE, host_network=False, memory_limit=parse_quantity("4Gi"))
    assert {"type": "network"} in cfg["linux"]["namespaces"]
    assert cfg["linux"]["resources"]["memory"] == {"limit": 4 << 30}
    assert cfg["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


def test_pod_config_env_override_working_dir_and_command():
    cfg = pod_config(RUNC_SPEC, IMAGE, command=["/tekton/scripts/script-0-x"], args=["a", "--", "b"],
                     env={"PATH": "/bin", "PARAM_IMAGE": "r/x:1"}, working_dir="/workspace/source")
    assert cfg["process"]["args"] == ["/tekton/scripts/script-0-x", "a", "--", "b"]
    assert cfg["process"]["env"] == ["PATH=/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
                                     "PARAM_IMAGE=r/x:1"]
    assert cfg["process"]["cwd"] == "/workspace/source"


def test_pod_config_rejects_unprefixed_capability():
    with pytest.raises(ValueError, match="CAP_"):
        pod_config(RUNC_SPEC, IMAGE, caps=("CHOWN",))


@pytest.mark.parametrize("image,command,args,want", [
    ({"Entrypoint": ["e"], "Cmd": ["c"]}, None, None, ["e", "c"]),
    ({"Entrypoint": ["e"], "Cmd": ["c"]}, None, ["a"], ["e", "a"]),
    ({"Entrypoint": ["e"], "Cmd": ["c"]}, ["x"], None, ["x"]),          # command drops the CMD
    ({"Entrypoint": ["e"], "Cmd": ["c"]}, ["x"], ["a"], ["x", "a"]),
    ({"Entrypoint": None, "Cmd": ["c", "d"]}, None, None, ["c", "d"]),
    ({"Cmd": ["c"]}, None, ["a"], ["a"]),
])
def test_k8s_argv_rules(image, command, args, want):
    assert k8s_argv(image, command, args) == want


def test_k8s_argv_empty_is_an_error():
    with pytest.raises(ValueError):
        k8s_argv({}, None, None)


def test_merge_env_overrides_by_name_keeps_order_and_equals_in_values():
    assert merge_env(["A=1", "B=x=y"], {"A": "2", "C": ""}) == ["A=2", "B=x=y", "C="]


def test_caps_for_security_context():
    assert caps_for({"runAsUser": 0, "privileged": False}) == CONTAINERD_DEFAULT_CAPS
    assert caps_for(None) == CONTAINERD_DEFAULT_CAPS
    dropped = caps_for({"capabilities": {"drop": ["net_raw"], "add": ["SYS_PTRACE"]}})
    assert "CAP_NET_RAW" not in dropped and dropped[-1] == "CAP_SYS_PTRACE"
    assert caps_for({"capabilities": {"drop": ["ALL"], "add": ["CHOWN"]}}) == ("CAP_CHOWN",)
    with pytest.raises(ValueError, match="privileged"):
        caps_for({"privileged": True})


@pytest.mark.parametrize("q,want", [("512Mi", 512 << 20), ("4Gi", 4 << 30), ("1G", 10 ** 9),
                                    ("100", 100), ("2k", 2000), (7, 7)])
def test_parse_quantity(q, want):
    assert parse_quantity(q) == want


@pytest.mark.parametrize("q", ["1.5Gi", "Gi", "4gb", ""])
def test_parse_quantity_rejects(q):
    with pytest.raises(ValueError):
        parse_quantity(q)
