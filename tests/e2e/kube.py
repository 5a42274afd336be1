"""Thin subprocess wrappers around docker, kind and kubectl for the e2e suite."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.lib import to_yaml


def sh(cmd: list[str], *, input: str | None = None, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


class Kube:
    def __init__(self, context: str):
        self.context = context

    def kubectl(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return sh(["kubectl", "--context", self.context, *args], **kw)

    def apply(self, objs: list[dict] | str | Path, namespace: str | None = None) -> None:
        ns = ["-n", namespace] if namespace else []
        if isinstance(objs, (str, Path)) and str(objs).startswith(("http://", "https://", "/")):
            self.kubectl("apply", *ns, "-f", str(objs))
        else:
            self.kubectl("apply", *ns, "-f", "-", input=to_yaml(objs) if isinstance(objs, list) else objs)

    def create(self, objs: list[dict]) -> None:
        self.kubectl("create", "-f", "-", input=to_yaml(objs))

    def get(self, kind: str, name: str, namespace: str) -> dict:
        return json.loads(self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)

    def items(self, kind: str, namespace: str, selector: str | None = None) -> list[dict]:
        sel = ["-l", selector] if selector else []
        return json.loads(self.kubectl("get", kind, "-n", namespace, *sel, "-o", "json").stdout)["items"]

    def wait_deployments(self, namespace: str, timeout: int = 300) -> None:
        self.kubectl("wait", "--for=condition=Available", "deployment", "--all", "-n", namespace,
                     f"--timeout={timeout}s", timeout=timeout + 30)

    def wait_crd(self, name: str, timeout: int = 120) -> None:
        """Wait until the CustomResourceDefinition ``name`` is Established (its kind is served)."""
        self.kubectl("wait", "--for=condition=Established", f"crd/{name}", f"--timeout={timeout}s",
                     timeout=timeout + 30)

    def wait_succeeded(self, kind: str, name: str, namespace: str, timeout: int = 900) -> dict:
        """Poll a TaskRun/PipelineRun until its Succeeded condition is set; fail on False/timeout."""
        deadline = time.monotonic() + timeout
        while True:
            obj = self.get(kind, name, namespace)
            cond = next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == "Succeeded"), None)
            if cond and cond["status"] == "True":
                return obj
            if cond and cond["status"] == "False":
                raise AssertionError(f"{kind}/{name} failed: {cond.get('reason')}: {cond.get('message')}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{kind}/{name} not done after {timeout}s: {cond}")
            time.sleep(5)

    def wait_pod_phase(self, name: str, namespace: str, phases=("Succeeded",), timeout: int = 300) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            pod = self.get("pod", name, namespace)
            phase = pod.get("status", {}).get("phase")
            if phase in phases:
                return pod
            if phase == "Failed":
                raise AssertionError(f"pod/{name} failed")
            if time.monotonic() > deadline:
                raise AssertionError(f"pod/{name} still {phase} after {timeout}s")
            time.sleep(3)

    def dump(self, namespace: str) -> str:
        """TaskRun/PipelineRun YAML and every pod's logs, for a failure report."""
        parts = []
        for kind in ("pipelineruns", "taskruns", "pods", "events"):
            parts.append(self.kubectl("get", kind, "-n", namespace, "-o", "yaml", check=False).stdout)
        for pod in self.items("pods", namespace):
            n = pod["metadata"]["name"]
            parts.append(f"--- logs {n}\n" + self.kubectl("logs", n, "-n", namespace, "--all-containers",
                                                          "--prefix", check=False).stdout)
        return "\n".join(parts)

    @contextlib.contextmanager
    def namespace(self, name: str, keep: bool = False):
        """A fresh namespace; on failure its runs and logs are printed; always deleted unless keep."""
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", timeout=300)
        self.kubectl("create", "namespace", name)
        try:
            yield name
        except BaseException:
            sys.stderr.write(f"\n===== e2e failure dump for namespace {name} =====\n{self.dump(name)}\n")
            raise
        finally:
            if not keep:
                self.kubectl("delete", "namespace", name, "--wait=false", check=False)
